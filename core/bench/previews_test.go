package bench

import (
	"context"
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel"
)

// Linear previews count the [3, Cvae] map at every latent pixel of every scale but the last, and a
// model without a map is counted with the fast previews it renders instead.
func TestLinearPreviewFLOPs(t *testing.T) {
	vc, ac := openTiny(t)
	got, err := PreviewFLOPs(ac.WeightSource(), []int{1, 2, 3, 4}, 2, varmodel.PreviewLinear)
	if want := int64(3 * 2 * 3 * 8 * 4 * 4 * 2); err != nil || got != want { // 3 scales, Cvae 8, P 4, 2 images
		t.Fatalf("linear preview FLOPs %d, %v; want %d", got, err, want)
	}
	b := cpu.New(0)
	p, err := varmodel.LoadPipeline(vc.WeightSource(), ac.WeightSource(), b, varmodel.Options{PatchNums: []int{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := CountFLOPs(p, ac.WeightSource(), 1, varmodel.PreviewLinear)
	fast, _ := PreviewFLOPs(ac.WeightSource(), []int{1, 2, 3, 4}, 1, varmodel.PreviewFast)
	if err != nil || f.Mode != varmodel.PreviewFast || f.Preview != fast {
		t.Fatalf("without a map: mode %v, preview FLOPs %d, %v; want fast's %d", f.Mode, f.Preview, err, fast)
	}
}

// PreviewQuality reports every scale but the last with PSNRs in range, and needs a map.
func TestPreviewQuality(t *testing.T) {
	vc, ac := openTiny(t)
	b := cpu.New(0)
	p, err := varmodel.LoadPipeline(vc.WeightSource(), ac.WeightSource(), b, varmodel.Options{PatchNums: []int{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	reqs := []varmodel.Request{{Labels: []int{2}, CFG: 4, TopK: 900, TopP: 0.95, Seed: 5}, {Labels: []int{6, 8}, CFG: 1, TopK: 1}}
	if _, err := PreviewQuality(context.Background(), b, p, reqs); err == nil {
		t.Fatal("PreviewQuality without a linear map succeeded")
	}
	if p.LinearPreview, _, err = p.FitLinearPreview(context.Background(), b, reqs, nil); err != nil {
		t.Fatal(err)
	}
	q, err := PreviewQuality(context.Background(), b, p, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 3 {
		t.Fatalf("%d scales reported, want 3", len(q))
	}
	for i, s := range q {
		if s.Scale != i || s.PN != i+1 || !(s.LinearPSNR > 0 && s.LinearPSNR <= MaxPSNR) || !(s.FastPSNR > 0 && s.FastPSNR <= MaxPSNR) {
			t.Errorf("scale %d: %+v", i, s)
		}
	}
	if _, err := PreviewQuality(context.Background(), b, p, nil); err == nil {
		t.Error("PreviewQuality without requests succeeded")
	}
}
