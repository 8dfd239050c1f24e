package convert

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/family"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/weights"
)

// A FlexVAR checkpoint pair converts like VAR's: the family is detected from its keys and recorded, the
// training buffers are left out, and the converted model (f32) generates the official greedy tokens.
func TestConvertFlexVAR(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	opt := ConvertOptions{Quant: weights.F32, PatchNums: []int{1, 2, 3, 4}, Sampling: &Sampling{CFG: 1.5, TopK: 1}}
	if _, err := Convert(testutil.FlexVARTiny("var.pth"), testutil.FlexVARTiny("vae.pth"), dir, opt); err != nil {
		t.Fatal(err)
	}
	m, err := weights.Load(context.Background(), weights.DirSource(dir), weights.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f := m.Manifest().Family; f != "flexvar" {
		t.Fatalf("family %q, want flexvar", f)
	}
	for _, skipped := range []string{"var.attn_bias_for_masking", "vae.quantize.codebook_used"} {
		if _, ok := m.Shape(skipped); ok {
			t.Errorf("training buffer %s was written", skipped)
		}
	}
	if _, err := LoadPipeline(m, cpu.New(0), varmodel.Options{}); err == nil {
		t.Error("a FlexVAR directory loaded as a VAR pipeline")
	}
	g, err := LoadGenerator(m, cpu.New(0), family.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info := g.Info(); info.Family != "flexvar" || info.Steps != 4 || info.Classes != 10 {
		t.Errorf("info %+v", info)
	}
	gold := testutil.OpenGolden(t, testutil.FlexVARTiny("golden.safetensors"))
	// ar1 is cfg 1.5, greedy, the schedule recorded at conversion: the model's defaults.
	res, err := g.Generate(context.Background(), gen.Request{Labels: gold.Ints("ar1.label_B")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for si := range res.Tokens {
		name := fmt.Sprintf("ar1.idx.s%d", si)
		testutil.IntsEqual(t, name, res.Tokens[si], gold.Ints(name))
	}
	h, w, err := g.ImageSize(gen.Settings{"schedule": "1,2,3,5", "aspect": "1:1"})
	if err != nil || h != 80 || w != 80 {
		t.Errorf("image size %dx%d (%v), want 80x80", w, h, err)
	}
}
