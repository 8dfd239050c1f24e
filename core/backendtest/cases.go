package backendtest

import (
	"math"
	"math/rand"

	"github.com/webvar/webvar/core"
)

// Cases is the op table. Each op family adds its rows here.
func Cases() []Case {
	var cs []Case
	cs = append(cs, elementwiseCases()...)
	cs = append(cs, matmulNormAttentionCases()...)
	cs = append(cs, convResizeCopyCases()...)
	cs = append(cs, quantCases()...)
	return cs
}

func one(f func(o *core.Ops, x *core.Tensor) *core.Tensor) func(o *core.Ops, in []*core.Tensor) *core.Tensor {
	return func(o *core.Ops, in []*core.Tensor) *core.Tensor { return f(o, in[0]) }
}

func elementwiseCases() []Case {
	wide := func(r *rand.Rand) []core.HostTensor { return []core.HostTensor{Randn(r, 0, 4, 3, 77, 131)} }
	return []Case{
		{Name: "gelu", Inputs: wide, Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.GELUTanh(x) }), Tol: 1e-5},
		{Name: "gelu-extreme", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{{Shape: core.Shape{6}, Data: []float32{-1e4, -30, -0.5, 0, 30, 1e4}}}
		}, Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.GELUTanh(x) }), Tol: 1e-5},
		{Name: "gelu-erf", Inputs: wide, Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.GELU(x) }), Tol: 1e-5},
		{Name: "gelu-erf-extreme", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{{Shape: core.Shape{11}, Data: []float32{-1e4, -30, -12, -8, -5.5, -0.5, 0, 0.5, 8, 30, 1e4}}}
		}, Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.GELU(x) }), Tol: 1e-5},
		// Every 2^-9 of [-9, 9] and the float32 values next to x = ±0.875*sqrt(2), where the float32 erf
		// of the fast CPU path and of the WGSL kernel changes pieces.
		{Name: "gelu-erf-grid", Inputs: func(r *rand.Rand) []core.HostTensor {
			var d []float32
			for x := -9.0; x <= 9; x += 1.0 / 512 {
				d = append(d, float32(x))
			}
			for _, s := range []float32{1, -1} {
				x := s * float32(0.875*math.Sqrt2)
				for range 16 {
					d = append(d, x, 2*s*float32(0.875*math.Sqrt2)-x)
					x = math.Nextafter32(x, 0)
				}
			}
			return []core.HostTensor{{Shape: core.Shape{len(d)}, Data: d}}
		}, Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.GELU(x) }), Tol: 1e-6},
		{Name: "silu", Inputs: wide, Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.SiLU(x) }), Tol: 1e-5},
		{Name: "clamp", Inputs: wide, Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.Clamp(x, -1, 1) }), Tol: 0},
		{Name: "axpby", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 5, 333), Randn(r, 0, 1, 5, 333)}
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Axpby(0.5, in[0], -0.25, in[1]) }, Tol: 1e-6},
		{Name: "add-broadcast", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 3, 17, 65), Randn(r, 0, 1, 17, 65)}
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Add(in[0], in[1]) }, Tol: 0},
		{Name: "addmulrows", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 3, 19, 97), Randn(r, 0, 1, 3, 19, 97), Randn(r, 0, 1, 3, 97)}
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.AddMulRows(in[0], in[1], in[2]) }, Tol: 1e-6},
		{Name: "modulate", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 4, 9, 130), Randn(r, 0, 1, 4, 130), Randn(r, 0, 1, 4, 130)}
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Modulate(in[0], in[1], in[2]) }, Tol: 1e-6},
		// MAR's diffusion step at a large-t respaced step of the 100-step cosine schedule (sqrt(1/abar) ~ 160)
		// with guidance, and at t = 0 without (no noise added).
		{Name: "ddpm-step-guided", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 37, 16), Randn(r, 0, 1, 74, 32), Randn(r, 0, 1, 37, 16)}
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			return o.DDPMStep(in[0], in[1], in[2], core.DDPMCoefs{Guided: true, CFG: 2.9, SqrtRecipAcp: 160.3, SqrtRecipm1Acp: 160.3,
				Coef1: 0.0081, Coef2: 0.65, MinLog: -0.7, MaxLog: -0.15, Nonzero: 1, Temperature: 0.9})
		}, Tol: 1e-5},
		{Name: "ddpm-step-last", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 5, 16), Randn(r, 0, 1, 5, 32), Randn(r, 0, 1, 5, 16)}
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			return o.DDPMStep(in[0], in[1], in[2], core.DDPMCoefs{SqrtRecipAcp: 1.00002, SqrtRecipm1Acp: 0.0064,
				Coef1: 1, Coef2: 0, MinLog: -10.7, MaxLog: -8.6, Nonzero: 0, Temperature: 1})
		}, Tol: 1e-6},
	}
}
