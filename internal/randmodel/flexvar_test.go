package randmodel

import (
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/flexvar"
)

// The official-shaped FlexVAR lists have the published parameter counts (spec: FlexVARd16 315.6M,
// FlexVAE 72.0M with a 42.5M decoder), load through the engine, and a small one generates.
func TestFlexVARShapes(t *testing.T) {
	count := func(ts []Tensor, skip func(string) bool) float64 {
		n := 0
		for _, x := range ts {
			if !skip(x.Name) {
				n += numel(x.Shape)
			}
		}
		return float64(n) / 1e6
	}
	vs, as := OfficialFlexVAR(16)
	buffers := func(n string) bool {
		return n == "attn_bias_for_masking" || strings.HasSuffix(n, "zero_k_bias") || n == "quantize.codebook_used"
	}
	if got := count(FlexVARTensors(vs), buffers); got < 315.55 || got > 315.65 {
		t.Errorf("FlexVAR-d16: %.2fM parameters, want 315.6M", got)
	}
	vae := LlamaGenVQTensors(as)
	if got := count(vae, buffers); got < 71.95 || got > 72.05 {
		t.Errorf("FlexVAE: %.2fM parameters, want 72.0M", got)
	}
	dec := func(n string) bool { return buffers(n) || !strings.HasPrefix(n, "decoder.") }
	if got := count(vae, dec); got < 42.4 || got > 42.55 { // 42.45M: the spec rounds
		t.Errorf("FlexVAE decoder: %.3fM parameters, want 42.5M", got)
	}

	small := FlexVARSpec{Depth: 2, C: 64, Heads: 1, Classes: 3, V: 32, Cvae: 8, PosSide: 8, TrainL: 30}
	vq := LlamaGenVQSpec{Ch: 32, Mult: []int{1, 2}, NumRes: 1, Z: 32, V: 32, Cvae: 8}
	varSrc, err := NewSource(FlexVARTensors(small), SeedVAR)
	if err != nil {
		t.Fatal(err)
	}
	vaeSrc, err := NewSource(LlamaGenVQTensors(vq), SeedVAE)
	if err != nil {
		t.Fatal(err)
	}
	b := cpu.New(1)
	p, err := flexvar.LoadPipeline(varSrc, vaeSrc, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Generate(t.Context(), b, flexvar.Request{Labels: []int{2}, Schedule: flexvar.Square([]int{1, 2, 3}), TopK: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Images.Shape; !s.Equal(core.Shape{1, 3, 6, 6}) {
		t.Errorf("image %v, want [1 3 6 6]", s)
	}
}
