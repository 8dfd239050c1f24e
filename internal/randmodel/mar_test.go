package randmodel

import (
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/mar"
)

// TestMARShapes: MAR-B's random checkpoint loads as a MAR model with the published parameter counts
// (208M for MAR-B with its diffusion head; the KL-16 decoder 38.2M of the VAE's 66.5M).
func TestMARShapes(t *testing.T) {
	s, v, err := OfficialMAR("b")
	if err != nil {
		t.Fatal(err)
	}
	ts := MARTensors(s)
	count := func(ts []Tensor, prefix string) (n int) {
		for _, x := range ts {
			if len(x.Name) >= len(prefix) && x.Name[:len(prefix)] == prefix {
				n += numel(x.Shape)
			}
		}
		return n
	}
	if n := count(ts, ""); n < 207e6 || n > 209e6 {
		t.Errorf("MAR-B has %.1fM parameters, want about 208M", float64(n)/1e6)
	}
	vt := KLVAETensors(v)
	if n := count(vt, "decoder."); n < 38.0e6 || n > 38.4e6 {
		t.Errorf("KL-16 decoder has %.2fM parameters, want 38.2M", float64(n)/1e6)
	}
	if n := count(vt, ""); n < 66e6 || n > 67e6 {
		t.Errorf("KL-16 has %.2fM parameters, want 66.5M", float64(n)/1e6)
	}
	src := Map(ts, SeedVAR)
	if !mar.Detect(src) {
		t.Fatal("not detected as MAR")
	}
	c, err := mar.InferConfig(src, mar.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Enc.Heads != 12 || c.Buffer != 64 || c.SeqLen != 256 || c.DiffDepth != 6 || c.DiffW != 1024 {
		t.Errorf("config %+v", c)
	}
	// The VAE loads (decoder only, as generation uses it).
	v.Encoder = false
	if _, err := mar.LoadVAE(core.NewWeights(Map(KLVAETensors(v), SeedVAE), cpu.New(1))); err != nil {
		t.Fatal(err)
	}
}
