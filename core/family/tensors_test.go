package family_test

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/family"
	"github.com/webvar/webvar/core/mar/martest"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/core/tensortable"
	"github.com/webvar/webvar/core/varmodel/vartest"
	"github.com/webvar/webvar/internal/testutil"
)

// varQuantizable and legacyQuantizable are the name patterns the families' Quantizable functions used
// before the tensor tables; the tables must give the same answers on every name of the fixtures'
// checkpoints.
var varQuantizable = regexp.MustCompile(`^(word_embed\.weight|shared_ada_lin\.1\.weight|head_nm\.ada_lin\.1\.weight|head\.weight|` +
	`blocks\.\d+\.(ada_lin\.1\.weight|attn\.mat_qkv\.weight|attn\.proj\.weight|ffn\.fc1\.weight|ffn\.fc2\.weight))$`)

var legacyQuantizable = map[string]*regexp.Regexp{
	"var": varQuantizable, "flexvar": varQuantizable, // the same Linear layers under the same names
	"mar": regexp.MustCompile(`^(z_proj|decoder_embed|(encoder|decoder)_blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)|` +
		`diffloss\.net\.(time_embed\.mlp\.[02]|cond_embed|input_proj|res_blocks\.\d+\.(mlp\.[02]|adaLN_modulation\.1)|final_layer\.(linear|adaLN_modulation\.1)))\.weight$`),
	"rq": regexp.MustCompile(`^(input_mlp|head_mlp|classifier\.linear|` +
		`(body|head)_transformer\.blocks\.\d+\.(attn\.(query|key|value|proj)|mlp\.[02]))\.weight$`),
}

// tableCase is a fixture's transformer checkpoint and the options its architecture needs (the head
// counts no tensor says).
type tableCase struct {
	name, family, path string
	opt                family.Options
}

// tableCases are the fixtures of every family: the bundled ones and each WEBVAR_FIXTURES directory.
func tableCases(t *testing.T) []tableCase {
	var out []tableCase
	for _, f := range testutil.Fixtures(t, "var") {
		o := vartest.Options(t, f)
		out = append(out, tableCase{f.Name, "var", f.Path("var.pth"), family.Options{PatchNums: o.PatchNums, Heads: o.Heads}})
	}
	for _, f := range testutil.Fixtures(t, "flexvar") {
		out = append(out, tableCase{f.Name, "flexvar", f.Path("var.pth"), family.Options{Heads: testutil.ReadVARConfig(t, f).NumHeads}})
	}
	for _, f := range testutil.Fixtures(t, "mar") {
		c := martest.ReadConfig(t, f).MAR
		out = append(out, tableCase{f.Name, "mar", f.Path("mar.pth"), family.Options{Heads: c.EncHeads, DecHeads: c.DecHeads}})
	}
	for _, f := range testutil.Fixtures(t, "rq") {
		data, err := os.ReadFile(f.Path(rq.Stage2Config))
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := rq.ParseConfig(rq.Stage2Config, data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tableCase{f.Name, "rq", f.Path("stage2/model.pt"), family.Options{Heads: c.Body.Heads, DecHeads: c.Head.Heads}})
	}
	return out
}

// inMemory reads every tensor of a checkpoint, for tests that break one.
func inMemory(t *testing.T, path string) core.MapSource {
	t.Helper()
	src := testutil.Source(t, path)
	m := core.MapSource{}
	for _, n := range src.Names() {
		h, err := src.Load(n)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = h
	}
	return m
}

// Each family's table is exactly its fixture checkpoint's layout, minus the buffers the family skips:
// the same names and shapes. Its Quantizable marks are the legacy name patterns' answers.
func TestTablesMatchFixtureCheckpoints(t *testing.T) {
	for _, c := range tableCases(t) {
		t.Run(c.name, func(t *testing.T) {
			src := testutil.Source(t, c.path)
			fam, err := family.Detect(src)
			if err != nil || fam.Name != c.family {
				t.Fatalf("detected %q (%v), want %q", fam.Name, err, c.family)
			}
			table, err := fam.Tensors(src, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			if err := table.Validate(); err != nil {
				t.Fatal(err)
			}
			for _, s := range table {
				got, ok := src.Shape(s.Name)
				if !ok {
					t.Errorf("%s %v: in the table, not in the checkpoint", s.Name, s.Shape)
				} else if !slices.Equal([]int(got), s.Shape) {
					t.Errorf("%s: table shape %v, checkpoint %v", s.Name, s.Shape, got)
				}
			}
			q := table.Quantizer()
			for _, n := range src.Names() {
				if _, ok := table.Find(n); !ok && !slices.Contains(fam.SkippedVAR, n) {
					t.Errorf("%s: in the checkpoint, neither in the table nor skipped", n)
				}
				if want := legacyQuantizable[c.family].MatchString(n); q(n) != want {
					t.Errorf("%s: quantizable %v, legacy pattern says %v", n, q(n), want)
				}
			}
		})
	}
}

// Loading a checkpoint without any one of its table's tensors fails with an error naming it, before
// anything is uploaded; a misshapen one names the tensor, the shape expected and the one found.
func TestLoadRejectsCheckpointsOffTheTable(t *testing.T) {
	for _, c := range tableCases(t) {
		t.Run(c.name, func(t *testing.T) {
			good := inMemory(t, c.path)
			fam, err := family.Detect(good)
			if err != nil {
				t.Fatal(err)
			}
			table, err := fam.Tensors(good, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			// The tokenizer is never reached: the transformer's checks come first.
			noVAE := core.MapSource{}
			for _, s := range table {
				broken := core.MapSource{}
				for k, v := range good {
					if k != s.Name {
						broken[k] = v
					}
				}
				_, err := fam.Load(broken, noVAE, cpu.New(1), c.opt, nil)
				if err == nil || !strings.Contains(err.Error(), s.Name) {
					t.Errorf("without %s: %v", s.Name, err)
				}
			}
			// The last bias: no family infers its architecture from it (VAR's head.bias, MAR's final
			// adaLN bias, RQ's classifier bias), so the table check is what sees it.
			var spec tensortable.Spec
			for _, sp := range table {
				if strings.HasSuffix(sp.Name, ".bias") {
					spec = sp
				}
			}
			broken := core.MapSource{}
			for k, v := range good {
				broken[k] = v
			}
			bad := append(slices.Clone(spec.Shape[:len(spec.Shape)-1]), spec.Shape[len(spec.Shape)-1]+1)
			broken[spec.Name] = core.HostTensor{Shape: bad, Data: make([]float32, tensortable.Spec{Shape: bad}.Numel())}
			_, err = fam.Load(broken, noVAE, cpu.New(1), c.opt, nil)
			want := (&core.WeightError{Tensor: spec.Name, Msg: fmt.Sprintf("shape %v, want %v", bad, spec.Shape)}).Error()
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("misshapen %s: %v, want %q", spec.Name, err, want)
			}
		})
	}
}
