package varmodel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/vqvae"
)

// Previews must not change what is generated: the tokens and the final image are bit-identical with
// every preview mode, every scale but the last gets a finite full-size preview in [0, 1], and the last
// scale's preview is the final image.
func TestPreviewModesKeepTheImage(t *testing.T) {
	p, _, b := loadTinyPipeline(t)
	side := p.VAE.ImageSize()
	base := Request{Labels: []int{3, 7}, CFG: 4, TopK: 900, TopP: 0.95, Seed: 11}
	// Without a map, linear previews are fast ones.
	if p.EffectivePreviews(PreviewLinear) != PreviewFast {
		t.Fatalf("linear previews without a map render as %v, want fast", p.EffectivePreviews(PreviewLinear))
	}
	lp, rms, err := p.FitLinearPreview(context.Background(), b, []Request{{Labels: []int{1}, CFG: 4, TopK: 900, TopP: 0.95}}, nil)
	if err != nil || !(rms >= 0) {
		t.Fatalf("fit: %v (RMS %g)", err, rms)
	}
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
	_, fallback := gen(PreviewLinear) // no map yet
	p.LinearPreview = lp
	for _, mode := range []PreviewMode{PreviewLinear, PreviewFast, PreviewFull} {
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
	_, linear := gen(PreviewLinear)
	for si := range len(fast) - 1 {
		if slices.Equal(fast[si].Data, full[si].Data) || slices.Equal(linear[si].Data, full[si].Data) || slices.Equal(linear[si].Data, fast[si].Data) {
			t.Errorf("scale %d: two preview modes give the same preview", si)
		}
		if !slices.Equal(fallback[si].Data, fast[si].Data) {
			t.Errorf("scale %d: linear previews without a map differ from fast ones", si)
		}
	}
	req := base
	req.Previews = PreviewMode(99)
	if _, err := p.Generate(context.Background(), b, req, nil); err == nil {
		t.Error("Generate accepted an unknown preview mode")
	}
}

// Linear previews are the map of f_hat at the latent resolution, upsampled: a scale's preview equals
// LinearPreview.Apply on that scale's f_hat, rebuilt from the tokens.
func TestLinearPreviewIsTheMapOfFHat(t *testing.T) {
	p, _, b := loadTinyPipeline(t)
	cvae := p.VAE.Config().Cvae
	w := make([]float32, 3*(cvae+1))
	for i := range w {
		w[i] = float32(i%7)/10 - 0.3
	}
	lp, err := vqvae.NewLinearPreview(cvae, w)
	if err != nil {
		t.Fatal(err)
	}
	p.LinearPreview = lp
	var previews []*core.HostTensor
	res, err := p.Generate(context.Background(), b, Request{Labels: []int{4}, CFG: 2, TopK: 1, Previews: PreviewLinear}, func(ev ScaleEvent) error {
		// Linear previews are rendered while the next scale runs: their events must still come once per
		// scale, in order, each with its own tokens.
		if ev.Scale != len(previews) || len(ev.Tokens) != ev.PN*ev.PN || ev.Preview == nil {
			t.Errorf("event %d: scale %d, %d tokens at pn %d, preview %v", len(previews), ev.Scale, len(ev.Tokens), ev.PN, ev.Preview != nil)
		}
		previews = append(previews, ev.Preview)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(previews) != len(p.VAR.Config().PatchNums) {
		t.Fatalf("%d events for %d scales", len(previews), len(p.VAR.Config().PatchNums))
	}
	o := core.NewOps(b)
	fhats := p.VAE.FHatFromTokens(o, res.Tokens, 1)
	defer o.Free(fhats...)
	for si := range len(fhats) - 1 {
		want, err := lp.Apply(o.Download(fhats[si]), p.VAE.ImageSize())
		if err != nil || o.Err() != nil {
			t.Fatal(err, o.Err())
		}
		if !slices.Equal(previews[si].Data, want.Data) {
			t.Errorf("scale %d: the linear preview is not the map of f_hat", si)
		}
	}
}

func TestParsePreviewMode(t *testing.T) {
	if len(PreviewModes()) != 4 {
		t.Errorf("PreviewModes() = %v, want the 4 modes", PreviewModes())
	}
	for _, m := range PreviewModes() {
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
		if got := InteractivePreviews(side, false); got != want {
			t.Errorf("InteractivePreviews(%d, no map) = %v, want %v", side, got, want)
		}
		if got := InteractivePreviews(side, true); got != PreviewLinear {
			t.Errorf("InteractivePreviews(%d, map) = %v, want linear", side, got)
		}
	}
}

// asyncCPU is the CPU backend declared asynchronous (core.Asynchronous), as WebGPU is: generation takes
// the path that renders a linear preview while the next scale is recorded and sends its event after.
type asyncCPU struct{ core.Backend }

func (asyncCPU) Asynchronous() bool { return true }

// tinyLinearPipeline is var-tiny with a linear preview map of zeros on b.
func tinyLinearPipeline(t *testing.T, b core.Backend) *Pipeline {
	t.Helper()
	p, _, _ := loadTinyPipelineOn(t, b)
	cvae := p.VAE.Config().Cvae
	lp, err := vqvae.NewLinearPreview(cvae, make([]float32, 3*(cvae+1)))
	if err != nil {
		t.Fatal(err)
	}
	p.LinearPreview = lp
	return p
}

// linearPreviewCases are the two ways generation delivers linear previews, each with what the tests
// below expect of it. On the CPU a scale's event comes before the next scale's transformer (deferring
// it would overlap nothing and only delay it); on an asynchronous backend it comes once the next scale
// is recorded (after its logits are, before the wait for them), so a cancellation seen at scale 1's
// event lets scale 2 finish and send its event too.
var linearPreviewCases = []struct {
	name             string
	new              func() core.Backend
	order, cancelled string // TestLinearPreviewEventOrder's log, TestLinearPreviewEventsOnCancel's scales
}{
	{"cpu", func() core.Backend { return cpu.New(0) }, "[s0 event0 s1 event1 s2 event2 s3 event3]", "[0 1]"},
	{"asynchronous", func() core.Backend { return asyncCPU{cpu.New(0)} }, "[s0 s1 event0 s2 event1 s3 event2 event3]", "[0 1 2]"},
}

// A linear preview's event comes in its backend's order (linearPreviewCases).
func TestLinearPreviewEventOrder(t *testing.T) {
	for _, c := range linearPreviewCases {
		t.Run(c.name, func(t *testing.T) {
			b := c.new()
			p := tinyLinearPipeline(t, b)
			var log []string
			o := core.NewOps(b)
			o.OnTap = func(name string, _ *core.Tensor) {
				var s int
				if n, _ := fmt.Sscanf(name, "ar.s%d.logits_raw", &s); n == 1 && strings.HasSuffix(name, ".logits_raw") {
					log = append(log, fmt.Sprintf("s%d", s))
				}
			}
			_, err := p.Run(context.Background(), o, Request{Labels: []int{1}, CFG: 2, TopK: 1, Previews: PreviewLinear},
				func(ev ScaleEvent) error {
					log = append(log, fmt.Sprintf("event%d", ev.Scale))
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(log); got != c.order {
				t.Errorf("order %s, want %s", got, c.order)
			}
		})
	}
}

// Cancelling during a generation with linear previews still delivers every finished scale's event, in
// order, before the cancellation error (which scales: linearPreviewCases). The error is the
// cancellation, once.
func TestLinearPreviewEventsOnCancel(t *testing.T) {
	for _, c := range linearPreviewCases {
		t.Run(c.name, func(t *testing.T) {
			b := c.new()
			p := tinyLinearPipeline(t, b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var scales []int
			_, err := p.Generate(ctx, b, Request{Labels: []int{1}, CFG: 2, TopK: 1, Previews: PreviewLinear}, func(ev ScaleEvent) error {
				scales = append(scales, ev.Scale)
				if ev.Scale == 1 {
					cancel() // as if the user pressed Cancel while this event was being shown
					return nil
				}
				return ctx.Err() // as the front ends do
			})
			if !errors.Is(err, context.Canceled) || err.Error() != context.Canceled.Error() {
				t.Fatalf("err = %q, want context.Canceled once", err)
			}
			if fmt.Sprint(scales) != c.cancelled {
				t.Errorf("events for scales %v, want %s", scales, c.cancelled)
			}
		})
	}
}
