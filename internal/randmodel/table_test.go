package randmodel

import (
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/mar"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/vqvae"
)

// Small random VAR models of every block variant (own or shared AdaLN, l2-norm or plain attention),
// drawn from varmodel's table, load through the real loader and generate.
func TestRandomVARLoads(t *testing.T) {
	for _, s := range []VARSpec{
		{Depth: 2, C: 64, Heads: 1, Classes: 3, V: 32, Cvae: 8, PatchNums: []int{1, 2, 3}, L2NormAttn: true},
		{Depth: 2, C: 64, Heads: 1, Classes: 3, V: 32, Cvae: 8, PatchNums: []int{1, 2, 3}, SharedAdaLN: true},
	} {
		varSrc, err := NewSource(VARTensors(s), SeedVAR)
		if err != nil {
			t.Fatal(err)
		}
		vaeSrc, err := NewSource(VAETensors(VAESpec{Ch: 32, Mult: []int{1, 2}, NumRes: 1, V: s.V, Cvae: s.Cvae,
			Scales: len(s.PatchNums), Phi: vqvae.PhiShared}), SeedVAE)
		if err != nil {
			t.Fatal(err)
		}
		b := cpu.New(1)
		p, err := varmodel.LoadPipeline(varSrc, vaeSrc, b, varmodel.Options{})
		if err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		if c := p.VAR.Config(); c.SharedAdaLN != s.SharedAdaLN || c.L2NormAttn != s.L2NormAttn || c.Depth != s.Depth {
			t.Fatalf("%+v loaded as %+v", s, c)
		}
		if _, err := p.Generate(t.Context(), b, varmodel.Request{Labels: []int{1}, TopK: 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// A small random MAR transformer, drawn from mar's table, loads through the real loader (the official
// sizes are checked in TestMARShapes; RQ's and FlexVAR's small models load and generate in their tests).
func TestRandomMARLoads(t *testing.T) {
	s := MARSpec{Depth: 2, C: 64, Classes: 3, Buffer: 2, SeqLen: 4, Ct: 16, DiffDepth: 2, DiffW: 32}
	m, err := mar.Load(core.NewWeights(Map(MARTensors(s), SeedVAR), cpu.New(1)), mar.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Config(); c.Enc.Depth != 2 || c.Dec.Depth != 2 || c.DiffDepth != 2 || c.SeqLen != 4 || c.Buffer != 2 {
		t.Fatalf("loaded as %+v", c)
	}
}
