package randmodel

import (
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/rq"
)

// TestRQShapes: the 480M and 1.4B random releases have about their published parameter counts, and the
// same layout at a small size loads as an RQ-Transformer with its RQ-VAE (256 x 256 images from 8 x 8
// codes: five 2x upsamplings).
func TestRQShapes(t *testing.T) {
	for size, want := range map[string][2]float64{"480m": {470e6, 500e6}, "1400m": {1.35e9, 1.5e9}} {
		s, _, err := OfficialRQ(size)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, x := range RQTensors(s) {
			n += numel(x.Shape)
		}
		if float64(n) < want[0] || float64(n) > want[1] {
			t.Errorf("RQ %s has %.1fM parameters", size, float64(n)/1e6)
		}
	}
	s, v, _ := OfficialRQ("480m")
	s.C, s.BodyLayers, s.HeadLayers, s.Heads, s.V, s.Embed, s.Classes = 64, 2, 1, 2, 32, 16, 10
	v.Ch, v.Z, v.Embed, v.V, v.Encoder = 32, 32, 16, 32, false
	p, err := rq.LoadPipeline(Map(RQTensors(s), SeedVAR), Map(RQVAETensors(v), SeedVAE), cpu.New(1), rq.Options{BodyHeads: 2, HeadHeads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if h, w := p.ImageSize(); h != 256 || w != 256 {
		t.Errorf("image %dx%d", h, w)
	}
}
