//go:build !js

// The fixture files are read from testdata, which a browser test binary cannot reach.

package webgpu

import (
	"context"
	"fmt"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/edit"
	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/core/flexvar/flexvartest"
	"github.com/webvar/webvar/core/mar/martest"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/varmodel/vartest"
	"github.com/webvar/webvar/core/vqvae"
	"github.com/webvar/webvar/internal/testutil"
)

// The var-tiny fixture end to end on the GPU: greedy tokens identical to the official ones, images and
// per-scale tensors within golden.md's tolerance.
func TestVarTinyGreedyOnWebGPU(t *testing.T) {
	b := newTestBackend(t)
	// No guard regions here: they flush at every allocation, and this test must exercise the batched
	// recording of a whole scale into one submission.
	b.guard = 0
	p := varTinyPipeline(t, b)
	g := testutil.OpenGolden(t, testutil.VarTiny("golden.safetensors"))
	for _, run := range []string{"ar0", "ar1", "ar2"} {
		t.Run(run, func(t *testing.T) {
			o := core.NewOps(b)
			taps := map[string]core.HostTensor{}
			o.OnTap = func(name string, x *core.Tensor) { taps[name] = o.Download(x) }
			req := varmodel.Request{Labels: g.Ints(run + ".label_B"), CFG: float64(g.F32(run + ".cfg").Data[0]), TopK: 1}
			res, err := p.Run(context.Background(), o, req, nil)
			if err != nil {
				t.Fatal(err)
			}
			for si := 0; si < 4; si++ {
				name := fmt.Sprintf("%s.idx.s%d", run, si)
				testutil.IntsEqual(t, name, res.Tokens[si], g.Ints(name))
				for _, n := range []string{"logits_raw", "f_hat", "block1.out"} {
					if name := fmt.Sprintf("%s.s%d.%s", run, si, n); g.Has(name) {
						testutil.RelClose(t, name, taps[fmt.Sprintf("ar.s%d.%s", si, n)].Data, g.F32(name).Data, 1e-4)
					}
				}
			}
			testutil.RelClose(t, run+".img", res.Images.Data, g.F32(run+".img").Data, 1e-4)
		})
	}
}

// Fast previews decode latents smaller than the model's (1x1 up to 3x3 for var-tiny) and upsample the
// images bicubically; linear ones map f_hat to RGB on the host while the GPU records the next scale
// (core.Asynchronous), their events trailing by a scale. Either way: the same previews as the CPU's,
// within golden.md's tolerance, one event per scale in order, and the same tokens.
func TestPreviewsMatchCPU(t *testing.T) {
	b := newTestBackend(t)
	cb := cpu.New(0)
	load := func(b core.Backend, mode varmodel.PreviewMode) *varmodel.Pipeline {
		p, err := varmodel.LoadPipeline(testutil.Source(t, testutil.VarTiny("var.pth")), testutil.Source(t, testutil.VarTiny("vae.pth")), b, varmodel.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if mode == varmodel.PreviewLinear {
			cvae := p.VAE.Config().Cvae
			w := make([]float32, 3*(cvae+1))
			for i := range w {
				w[i] = float32(i%5)/8 - 0.2
			}
			if p.LinearPreview, err = vqvae.NewLinearPreview(cvae, w); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	for _, mode := range []varmodel.PreviewMode{varmodel.PreviewFast, varmodel.PreviewLinear} {
		t.Run(mode.String(), func(t *testing.T) {
			// Greedy: sampling cannot diverge on a last-bit difference in the logits.
			req := varmodel.Request{Labels: []int{1, 6}, CFG: 3, TopK: 1, Previews: mode}
			run := func(p *varmodel.Pipeline, b core.Backend) (*varmodel.Result, []core.HostTensor) {
				var previews []core.HostTensor
				res, err := p.Generate(context.Background(), b, req, func(ev varmodel.ScaleEvent) error {
					if ev.Preview == nil || ev.Scale != len(previews) {
						return fmt.Errorf("event %d: scale %d, preview %v", len(previews), ev.Scale, ev.Preview != nil)
					}
					previews = append(previews, *ev.Preview)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				return res, previews
			}
			gres, gprev := run(load(b, mode), b)
			cres, cprev := run(load(cb, mode), cb)
			if len(gprev) != len(cprev) {
				t.Fatalf("%d previews on WebGPU, %d on the CPU", len(gprev), len(cprev))
			}
			for si := range cres.Tokens {
				testutil.IntsEqual(t, fmt.Sprintf("idx.s%d", si), gres.Tokens[si], cres.Tokens[si])
			}
			for si := range cprev {
				if !gprev[si].Shape.Equal(cprev[si].Shape) {
					t.Fatalf("scale %d: preview shape %v on WebGPU, %v on the CPU", si, gprev[si].Shape, cprev[si].Shape)
				}
				testutil.RelClose(t, fmt.Sprintf("preview.s%d", si), gprev[si].Data, cprev[si].Data, 1e-4)
			}
		})
	}
}

// varTinyPipeline loads the var-tiny checkpoints onto b.
func varTinyPipeline(t *testing.T, b *Backend) *varmodel.Pipeline {
	t.Helper()
	p, err := varmodel.LoadPipeline(testutil.Source(t, testutil.VarTiny("var.pth")), testutil.Source(t, testutil.VarTiny("vae.pth")), b, varmodel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Every golden of testdata/flexvar-tiny (and of each WEBVAR_FIXTURES FlexVAR directory) on the GPU:
// the same checks as the CPU's (core/flexvar/flexvartest).
func TestFlexVARFixtureOnWebGPU(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	for _, f := range testutil.Fixtures(t, "flexvar") {
		t.Run(f.Name, func(t *testing.T) {
			flexvartest.Check(t, f, b)
			if !t.Failed() {
				println("fixture " + f.Name + ": ok (webgpu)")
			}
		})
	}
}

// Every golden of testdata/mar-tiny (and of each WEBVAR_FIXTURES MAR directory) on the GPU: the same
// checks as the CPU's (core/mar/martest).
func TestMARFixtureOnWebGPU(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	for _, f := range testutil.Fixtures(t, "mar") {
		t.Run(f.Name, func(t *testing.T) {
			martest.Check(t, f, b)
			if !t.Failed() {
				println("fixture " + f.Name + ": ok (webgpu)")
			}
		})
	}
}

// The end-to-end VAR goldens of testdata/var-tiny (and of each WEBVAR_FIXTURES VAR directory) on the GPU:
// the same checks as the CPU's (core/varmodel/vartest).
func TestVARFixtureOnWebGPU(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	for _, f := range testutil.Fixtures(t, "var") {
		t.Run(f.Name, func(t *testing.T) {
			vartest.Check(t, f, b)
			t.Run("edit", func(t *testing.T) { vartest.CheckEdit(t, f, b) })
			if !t.Failed() {
				println("fixture " + f.Name + ": ok (webgpu)")
			}
		})
	}
}

// FlexVAR image-to-image on the GPU: a full keep-mask keeps the input's tokens at every step and an edit
// with a box keeps exactly the positions its masks keep (the construction tests of core/flexvar).
func TestFlexVAREditOnWebGPU(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	f := testutil.Fixtures(t, "flexvar")[0]
	p := flexvartest.Load(t, f, b)
	sched := flexvar.Square([]int{1, 2, 3, 4})
	base, err := p.Generate(context.Background(), b, flexvar.Request{Labels: []int{1}, Schedule: sched, CFG: 2, TopK: 20, Seed: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := core.HostTensor{Shape: base.Images.Shape, Data: make([]float32, len(base.Images.Data))}
	for i, v := range base.Images.Data {
		img.Data[i] = 2*v - 1
	}
	o := core.NewOps(b)
	for _, mask := range [][]float32{
		{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
		edit.BoxMask(4, 4, [4]float64{0, 0, 0.6, 0.6}, false),
	} {
		e, err := p.EditOf(o, img, sched, mask, 0)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Generate(context.Background(), b, flexvar.Request{Labels: []int{0}, Schedule: sched, CFG: 2, TopK: 20, Seed: 5, Edit: e}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for si := range sched {
			for j, k := range e.Keep[si] {
				if k && res.Tokens[si][j] != e.Tokens[si][j] {
					t.Fatalf("step %d: kept position %d has %d, the input's %d", si, j, res.Tokens[si][j], e.Tokens[si][j])
				}
			}
		}
	}
}
