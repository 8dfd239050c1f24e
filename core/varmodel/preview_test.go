package varmodel

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/webvar/webvar/core"
)

// Previews must not change what is generated: the tokens and the final image are bit-identical with
// every preview mode, every scale but the last gets a finite full-size preview in [0, 1], and the last
// scale's preview is the final image.
func TestPreviewModesKeepTheImage(t *testing.T) {
	p, _, b := loadTinyPipeline(t)
	side := p.VAE.ImageSize()
	base := Request{Labels: []int{3, 7}, CFG: 4, TopK: 900, TopP: 0.95, Seed: 11}
	gen := func(mode PreviewMode) (*Result, []*core.HostTensor) {
		req := base
		req.Previews = mode
		var previews []*core.HostTensor
		res, err := p.Generate(context.Background(), b, req, func(ev ScaleEvent) error {
			previews = append(previews, ev.Preview)
			return nil
		})
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		return res, previews
	}
	ref, none := gen(PreviewNone)
	for si, pv := range none {
		if pv != nil {
			t.Errorf("PreviewNone: scale %d has a preview", si)
		}
	}
	for _, mode := range []PreviewMode{PreviewFast, PreviewFull} {
		res, previews := gen(mode)
		for si := range ref.Tokens {
			if !slices.Equal(res.Tokens[si], ref.Tokens[si]) {
				t.Errorf("%v: scale %d's tokens differ from PreviewNone's", mode, si)
			}
		}
		if !slices.Equal(res.Images.Data, ref.Images.Data) || fmt.Sprint(res.Images.Shape) != fmt.Sprint(ref.Images.Shape) {
			t.Errorf("%v: the final image differs from PreviewNone's", mode)
		}
		if len(previews) != len(ref.Tokens) {
			t.Fatalf("%v: %d scale events, want %d", mode, len(previews), len(ref.Tokens))
		}
		for si, pv := range previews {
			if pv == nil {
				t.Errorf("%v: scale %d has no preview", mode, si)
				continue
			}
			if want := (core.Shape{2, 3, side, side}); fmt.Sprint(pv.Shape) != fmt.Sprint(want) {
				t.Errorf("%v: scale %d's preview has shape %v, want %v", mode, si, pv.Shape, want)
			}
			for i, v := range pv.Data {
				if math.IsNaN(float64(v)) || v < 0 || v > 1 {
					t.Errorf("%v: scale %d's preview has %g at element %d, want a value in [0, 1]", mode, si, v, i)
					break
				}
			}
		}
		if last := previews[len(previews)-1]; last != nil && !slices.Equal(last.Data, ref.Images.Data) {
			t.Errorf("%v: the last scale's preview is not the final image", mode)
		}
	}
	// A fast preview at an intermediate scale is not the full one, else the mode would do nothing. (The
	// fixture's weights are untrained, so how alike the two look says nothing here.)
	_, fast := gen(PreviewFast)
	_, full := gen(PreviewFull)
	if si := len(fast) - 2; slices.Equal(fast[si].Data, full[si].Data) {
		t.Errorf("scale %d: the fast preview equals the full one", si)
	}
	req := base
	req.Previews = PreviewFull + 1
	if _, err := p.Generate(context.Background(), b, req, nil); err == nil {
		t.Error("Generate accepted an unknown preview mode")
	}
}

func TestParsePreviewMode(t *testing.T) {
	for _, m := range []PreviewMode{PreviewNone, PreviewFast, PreviewFull} {
		got, err := ParsePreviewMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParsePreviewMode(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	if _, err := ParsePreviewMode("half"); err == nil {
		t.Error(`ParsePreviewMode("half") succeeded`)
	}
}

func TestInteractivePreviews(t *testing.T) {
	for side, want := range map[int]PreviewMode{32: PreviewFull, 64: PreviewFull, 256: PreviewFast, 512: PreviewFast} {
		if got := InteractivePreviews(side); got != want {
			t.Errorf("InteractivePreviews(%d) = %v, want %v", side, got, want)
		}
	}
}
