// Package vartest checks a VAR fixture directory (golden tensors from the official code, see
// testdata/var-tiny/golden.md) on any backend: varmodel's tests run it on the CPU, core/webgpu's on the
// GPU, each on testdata/var-tiny and on every WEBVAR_FIXTURES directory of the family. Only the
// architecture comes from the checkpoints (and the fixture's config.json patch_nums where L does not
// determine them): nothing here is specific to var-tiny's sizes.
package vartest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/internal/testutil"
)

// relTol is golden.md's: activations, logits and images ~1e-4 relative to the tensor's max |value|.
const relTol = 1e-4

// Options reads the fixture's patch_nums and head count from its config.json when it has one.
func Options(t *testing.T, f testutil.Fixture) varmodel.Options {
	t.Helper()
	c := testutil.ReadVARConfig(t, f)
	return varmodel.Options{PatchNums: c.PatchNums, Heads: c.NumHeads}
}

// Load opens the fixture's checkpoints on b.
func Load(t *testing.T, f testutil.Fixture, b core.Backend) *varmodel.Pipeline {
	t.Helper()
	p, err := varmodel.LoadPipeline(testutil.Source(t, f.Path("var.pth")), testutil.Source(t, f.Path("vae.pth")), b, Options(t, f))
	if err != nil {
		t.Fatalf("fixture %s: %v", f.Name, err)
	}
	return p
}

// Check runs the fixture's end-to-end goldens on b: the VQVAE (image -> tokens, tokens -> image, the
// teacher-forcing input), the teacher-forced forward and every greedy generation; tokens exactly.
func Check(t *testing.T, f testutil.Fixture, b core.Backend) {
	p := Load(t, f, b)
	g := testutil.OpenGolden(t, f.Path("golden.safetensors"))
	t.Run("vqvae", func(t *testing.T) { checkVQVAE(t, p, g, b) })
	t.Run("teacher-forced", func(t *testing.T) { checkTeacherForced(t, p, g, b) })
	g.Generations(t, f.Name, func(t *testing.T, run string) { checkGeneration(t, p, g, b, run) })
}

func checkVQVAE(t *testing.T, p *varmodel.Pipeline, g *testutil.Golden, b core.Backend) {
	if !g.Has("vae.x") {
		t.Skip("fixture has no VQVAE goldens")
	}
	o := core.NewOps(b)
	pn := p.VAR.Config().PatchNums
	f := p.VAE.Encode(o, o.Upload(g.F32("vae.x")))
	if g.Has("vae.f") {
		testutil.RelClose(t, "vae.f", o.Download(f).Data, g.F32("vae.f").Data, relTol)
	}
	bsz := f.Dim(0)
	ids, _ := p.VAE.Tokenize(o, f, false)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	var want [][]int
	for si := range pn {
		name := fmt.Sprintf("vae.idx.s%d", si)
		testutil.IntsEqual(t, name+" (from vae.x)", ids[si], g.Ints(name))
		want = append(want, g.Ints(name))
	}
	if g.Has("tf.x_BLCv_wo_first_l") {
		x := p.VAE.VarInput(o, want, bsz)
		testutil.RelClose(t, "tf.x_BLCv_wo_first_l", o.Download(x).Data, g.F32("tf.x_BLCv_wo_first_l").Data, relTol)
	}
	if g.Has("vae.recon") {
		fhats := p.VAE.FHatFromTokens(o, want, bsz)
		img := p.VAE.Decode(o, fhats[len(fhats)-1])
		testutil.RelClose(t, "vae.recon", o.Download(img).Data, g.F32("vae.recon").Data, relTol)
	}
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
}

func checkTeacherForced(t *testing.T, p *varmodel.Pipeline, g *testutil.Golden, b core.Backend) {
	if !g.Has("tf.logits") {
		t.Skip("fixture has no teacher-forcing goldens")
	}
	o := core.NewOps(b)
	taps := map[string]core.HostTensor{}
	o.OnTap = func(name string, x *core.Tensor) { taps[name] = o.Download(x) }
	logits := o.Download(p.VAR.TeacherForward(o, g.Ints("tf.label_B"), o.Upload(g.F32("tf.x_BLCv_wo_first_l"))))
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	names := []string{"tf.x_in", "tf.cond_BD_or_gss", "tf.head_nm_out"}
	for i := 0; i < p.VAR.Config().Depth; i++ {
		for _, s := range []string{"attn_out", "ffn_out", "out"} {
			names = append(names, fmt.Sprintf("tf.block%d.%s", i, s))
		}
	}
	g.CompareTaps(t, taps, names, relTol)
	testutil.RelClose(t, "tf.logits", logits.Data, g.F32("tf.logits").Data, relTol)
}

func checkGeneration(t *testing.T, p *varmodel.Pipeline, g *testutil.Golden, b core.Backend, run string) {
	o := core.NewOps(b)
	taps := map[string]core.HostTensor{}
	o.OnTap = func(name string, x *core.Tensor) { taps[name] = o.Download(x) }
	req := varmodel.Request{Labels: g.Ints(run + ".label_B"), CFG: float64(g.F32(run + ".cfg").Data[0]), TopK: 1}
	k := len(p.VAR.Config().PatchNums)
	events := 0
	res, err := p.Run(context.Background(), o, req, func(ev varmodel.ScaleEvent) error {
		if ev.Scale != events {
			t.Errorf("event for scale %d, want %d", ev.Scale, events)
		}
		events++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if events != k {
		t.Errorf("%d scale events, want %d", events, k)
	}
	for si := 0; si < k; si++ {
		name := fmt.Sprintf("%s.idx.s%d", run, si)
		testutil.IntsEqual(t, name, res.Tokens[si], g.Ints(name))
		for _, n := range []string{"logits_raw", "logits_cfg", "f_hat", "next_in"} {
			gname := fmt.Sprintf("%s.s%d.%s", run, si, n)
			if !g.Has(gname) {
				continue
			}
			got, ok := taps[fmt.Sprintf("ar.s%d.%s", si, n)]
			if !ok {
				t.Errorf("no tap for %s", gname)
				continue
			}
			testutil.RelClose(t, gname, got.Data, g.F32(gname).Data, relTol)
		}
		for i := 0; i < p.VAR.Config().Depth; i++ {
			gname := fmt.Sprintf("%s.s%d.block%d.out", run, si, i)
			if g.Has(gname) {
				testutil.RelClose(t, gname, taps[fmt.Sprintf("ar.s%d.block%d.out", si, i)].Data, g.F32(gname).Data, relTol)
			}
		}
	}
	testutil.RelClose(t, run+".img", res.Images.Data, g.F32(run+".img").Data, relTol)
}

// CheckEdit runs the fixture's zero-shot editing goldens (edit.safetensors, edit.json: the official
// notebook's functions), when it has them, on b: the input's tokens, each case's keep-masks at every
// scale, its tokens exactly and its image within 3/255.
func CheckEdit(t *testing.T, f testutil.Fixture, b core.Backend) {
	raw, err := os.ReadFile(f.Path("edit.json"))
	if os.IsNotExist(err) {
		t.Logf("fixture %s has no edit goldens", f.Name)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Cases []struct {
			Name      string     `json:"name"`
			Label     int        `json:"label"`
			CFG       float64    `json:"cfg"`
			Box       [4]float64 `json:"box_y0_x0_y1_x1"`
			Inpaint   bool       `json:"inpainting"`
			TopK      int        `json:"top_k"`
			TopP      float64    `json:"top_p"`
			GeneSeed  uint64     `json:"g_seed"`
			Generated int        `json:"generated_tokens"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("edit.json: %v", err)
	}
	p := Load(t, f, b)
	g := testutil.OpenGolden(t, f.Path("edit.safetensors"))
	pn := p.VAR.Config().PatchNums
	last := pn[len(pn)-1]
	o := core.NewOps(b)
	in := g.F32("edit.input")
	for _, c := range cfg.Cases {
		t.Run(c.Name, func(t *testing.T) {
			mask := varmodel.BoxMask(last, c.Box, c.Inpaint)
			testutil.AbsClose(t, "edit."+c.Name+".mask", mask, g.F32("edit."+c.Name+".mask").Data, 0)
			e, err := p.EditOf(o, in, mask)
			if err != nil {
				t.Fatal(err)
			}
			for si := range pn {
				testutil.IntsEqual(t, fmt.Sprintf("edit.input_idx.s%d", si), e.Tokens[si], g.Ints(fmt.Sprintf("edit.input_idx.s%d", si)))
				want := g.Ints(fmt.Sprintf("edit.%s.force.s%d", c.Name, si))
				got := make([]int, len(e.Keep[si]))
				for i, k := range e.Keep[si] {
					if k {
						got[i] = 1
					}
				}
				testutil.IntsEqual(t, fmt.Sprintf("edit.%s.force.s%d", c.Name, si), got, want)
			}
			res, err := p.Generate(context.Background(), b, varmodel.Request{Labels: []int{c.Label}, CFG: c.CFG, TopK: max(c.TopK, 1),
				TopP: c.TopP, Seed: c.GeneSeed, Edit: e}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for si := range pn {
				name := fmt.Sprintf("edit.%s.idx.s%d", c.Name, si)
				testutil.IntsEqual(t, name, res.Tokens[si], g.Ints(name))
			}
			testutil.AbsClose(t, "edit."+c.Name+".img", res.Images.Data, g.F32("edit."+c.Name+".img").Data, 3.0/255)
		})
	}
}
