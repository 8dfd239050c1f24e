//go:build !js

// The fixture files are read from testdata, which a browser test binary cannot reach.

package webgpu

import (
	"context"
	"testing"

	"github.com/webvar/webvar/core/varmodel"
)

// A generation must free every tensor it makes: on this backend a tensor that is never freed keeps its
// buffer (neither pooled nor released) until the backend closes, so a leak grows with every image the
// browser app draws. Whatever the request, the live bytes after it are those after loading the model.
func TestGenerationFreesItsTensors(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	p := varTinyPipeline(t, b)
	loaded := b.MemoryStats()
	for _, req := range []varmodel.Request{
		{Labels: []int{1}, CFG: 4, TopK: 900, TopP: 0.95},
		{Labels: []int{1, 2}, CFG: 4, TopK: 900, TopP: 0.95, MoreSmooth: true, Previews: varmodel.PreviewFast},
		{Labels: []int{3}, CFG: 2, Previews: varmodel.PreviewFull, RandomAfter: 2},
	} {
		if _, err := p.Generate(context.Background(), b, req, nil); err != nil {
			t.Fatal(err)
		}
		if s := b.MemoryStats(); s.Live != loaded.Live || s.Uploaded != loaded.Uploaded {
			t.Errorf("previews %v, more-smooth %v: %d bytes live after the generation (%d uploaded), %d after loading (%d uploaded)",
				req.Previews, req.MoreSmooth, s.Live, s.Uploaded, loaded.Live, loaded.Uploaded)
		}
		// Nor does it keep idle buffers (Pipeline.Run releases them): the next image's transformer
		// would find its decoder's buffers beside its own.
		if s := b.MemoryStats(); s.Pooled != 0 {
			t.Errorf("previews %v: %d bytes pooled after the generation, want 0", req.Previews, s.Pooled)
		}
	}
}

// Fast previews decode each scale's f_hat at that scale's own resolution: buffers of sizes the next
// scale's preview will not ask for. None of them may stay pooled beside the transformer's memory once
// the preview is done (on VAR-d16 they made the peak exceed 1 GiB).
func TestFastPreviewsLeaveNoIdleBuffers(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	p := varTinyPipeline(t, b)
	scales := 0
	_, err := p.Generate(context.Background(), b, varmodel.Request{Labels: []int{2}, CFG: 3, TopK: 1, Previews: varmodel.PreviewFast},
		func(ev varmodel.ScaleEvent) error {
			scales++
			if s := b.MemoryStats(); ev.Scale < ev.Scales-1 && s.Pooled != 0 {
				t.Errorf("scale %d: %d bytes in %d idle buffers after its fast preview", ev.Scale, s.Pooled, s.PoolBuffers)
			}
			return nil
		})
	if err != nil || scales != 4 {
		t.Fatalf("%d events, err %v", scales, err)
	}
}
