package cpu

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

// LayerNorm normalizes x [..., C] over its last dimension without affine parameters (PyTorch nn.LayerNorm
// with elementwise_affine=False):
//
//	y = (x - mean) / sqrt(var + eps),   mean and biased variance of the row, in float64.
func (be *Backend) LayerNorm(x *core.Tensor, eps float32) (*core.Tensor, error) {
	return be.layerNorm(x, nil, nil, eps)
}

// LayerNormAffine is PyTorch nn.LayerNorm(C, eps) with its elementwise affine, w [C] and b [C] (nil: no
// bias, as with bias=False):
//
//	y = (x - mean) / sqrt(var + eps) * w[c] + b[c],   in float64 and rounded once, as LayerNorm.
func (be *Backend) LayerNormAffine(x, w, b *core.Tensor, eps float32) (*core.Tensor, error) {
	if w == nil {
		return nil, fmt.Errorf("layernorm: w is nil (LayerNorm is the op without affine parameters)")
	}
	return be.layerNorm(x, w, b, eps)
}

// layerNorm is LayerNorm and LayerNormAffine: w and b are each [C] or nil (not applied).
func (be *Backend) layerNorm(x, w, b *core.Tensor, eps float32) (*core.Tensor, error) {
	const op = "layernorm"
	x_NC, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) < 1 || xs[len(xs)-1] == 0 {
		return nil, shapeError(op, "x %v needs a non-empty last dimension", xs)
	}
	C := xs[len(xs)-1]
	w_C, err := rowParam(op, "w", w, C, xs)
	if err != nil {
		return nil, err
	}
	b_C, err := rowParam(op, "b", b, C, xs)
	if err != nil {
		return nil, err
	}
	N := len(x_NC) / C
	y, y_NC := newTensor(xs...)
	be.parallelFor(N, func(n0, n1 int) {
		for n := n0; n < n1; n++ {
			row, out := x_NC[n*C:(n+1)*C], y_NC[n*C:(n+1)*C]
			mean, variance := meanVar(row)
			rstd := 1 / math.Sqrt(variance+float64(eps))
			for c, v := range row {
				r := (float64(v) - mean) * rstd
				if w_C != nil {
					r *= float64(w_C[c])
				}
				if b_C != nil {
					r += float64(b_C[c])
				}
				out[c] = float32(r)
			}
		}
	})
	return y, nil
}

// rowParam returns the data of a per-channel parameter t [C] of op on x of shape xs, or nil for t nil.
func rowParam(op, name string, t *core.Tensor, C int, xs core.Shape) ([]float32, error) {
	if t == nil {
		return nil, nil
	}
	data, err := floats(op, name, t)
	if err != nil {
		return nil, err
	}
	if !t.Shape().Equal(core.Shape{C}) {
		return nil, shapeError(op, "%s %v, want [%d] for x %v", name, t.Shape(), C, xs)
	}
	return data, nil
}

// meanVar returns the mean and the biased variance (divided by n, as PyTorch's normalisation layers use) of
// x, in float64 and in two passes so that a large mean does not cancel the variance.
func meanVar(x []float32) (mean, variance float64) {
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	mean = sum / float64(len(x))
	var sq float64
	for _, v := range x {
		dv := float64(v) - mean
		sq += dv * dv
	}
	return mean, sq / float64(len(x))
}

// Modulate is the AdaLN modulation x * (1 + scale[b]) + shift[b] for x [B, L, C] and scale, shift [B, C].
// As in PyTorch (x.mul(scale.add(1)).add_(shift)) each of 1+scale, the product and the sum is rounded to
// float32.
func (be *Backend) Modulate(x, scale, shift *core.Tensor) (*core.Tensor, error) {
	const op = "modulate"
	x_BLC, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	scale_BC, err := floats(op, "scale", scale)
	if err != nil {
		return nil, err
	}
	shift_BC, err := floats(op, "shift", shift)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 3 || !scale.Shape().Equal(core.Shape{xs[0], xs[2]}) || !shift.Shape().Equal(core.Shape{xs[0], xs[2]}) {
		return nil, shapeError(op, "want x [B, L, C] and scale, shift [B, C], got x %v, scale %v, shift %v", xs, scale.Shape(), shift.Shape())
	}
	B, L, C := xs[0], xs[1], xs[2]
	y, y_BLC := newTensor(B, L, C)
	be.parallelFor(B*L, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			b := r / L
			sc, sh := scale_BC[b*C:(b+1)*C], shift_BC[b*C:(b+1)*C]
			in, out := x_BLC[r*C:(r+1)*C], y_BLC[r*C:(r+1)*C]
			for c, v := range in {
				out[c] = float32(v*float32(1+sc[c])) + sh[c]
			}
		}
	})
	return y, nil
}

// GroupNorm is PyTorch nn.GroupNorm(groups, C, eps, affine) on x [B, C, H, W] followed, when silu is true, by
// SiLU (the VAE always applies them together). Channels [g*C/groups, (g+1)*C/groups) form group g; for each
// batch element and group:
//
//	y[c] = (x[c] - mean) / sqrt(var + eps) * w[c] + b[c]    (mean, biased var and y in float64)
//
// y is rounded to float32 before the optional SiLU, as PyTorch's separate SiLU op sees it.
func (be *Backend) GroupNorm(x *core.Tensor, groups int, w, b *core.Tensor, eps float32, silu bool) (*core.Tensor, error) {
	const op = "groupnorm"
	x_BCHW, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	w_C, err := floats(op, "w", w)
	if err != nil {
		return nil, err
	}
	b_C, err := floats(op, "b", b)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 4 {
		return nil, shapeError(op, "want x [B, C, H, W], got %v", xs)
	}
	B, C, HW := xs[0], xs[1], xs[2]*xs[3]
	if groups <= 0 || C%groups != 0 {
		return nil, shapeError(op, "%d groups do not divide the %d channels of x %v", groups, C, xs)
	}
	if !w.Shape().Equal(core.Shape{C}) || !b.Shape().Equal(core.Shape{C}) {
		return nil, shapeError(op, "w %v and b %v, want [%d] for x %v", w.Shape(), b.Shape(), C, xs)
	}
	if HW == 0 {
		return nil, shapeError(op, "x %v has no pixels", xs)
	}
	cg := C / groups // channels per group; a group is cg*HW contiguous values
	y, y_BCHW := newTensor(xs...)
	be.parallelFor(B*groups, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			base := i * cg * HW // (b, g) -> first value of channel g*cg of batch element b
			var mean, variance float64
			if be.fastMath {
				mean, variance = meanVarFast(x_BCHW[base : base+cg*HW])
			} else {
				mean, variance = meanVar(x_BCHW[base : base+cg*HW])
			}
			rstd := 1 / math.Sqrt(variance+float64(eps))
			for j := range cg {
				c := (i%groups)*cg + j
				in := x_BCHW[base+j*HW : base+(j+1)*HW]
				out := y_BCHW[base+j*HW : base+(j+1)*HW]
				if be.fastMath {
					groupNormFast(in, out, mean, rstd, w_C[c], b_C[c], silu)
					continue
				}
				for p, v := range in {
					out[p] = float32((float64(v)-mean)*rstd*float64(w_C[c]) + float64(b_C[c]))
					if silu {
						out[p] = siLU(out[p])
					}
				}
			}
		}
	})
	return y, nil
}

// normalizeEps is F.normalize's default eps: the norm is clamped to at least this before dividing.
const normalizeEps = 1e-12

// NormalizeHeads L2-normalizes each head's d-vector of x [B, L, C] (d = C/heads), as F.normalize(dim=-1)
// does on the [B, heads, L, d] view, and multiplies head h by scale[h] when scale [heads] is not nil:
//
//	y = float32(x / max(||x||_2, 1e-12)) * scale[h]    (norm and quotient in float64)
func (be *Backend) NormalizeHeads(x *core.Tensor, heads int, scale *core.Tensor) (*core.Tensor, error) {
	const op = "normalize"
	x_BLC, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 3 {
		return nil, shapeError(op, "want x [B, L, C], got %v", xs)
	}
	C := xs[2]
	if heads <= 0 || C%heads != 0 {
		return nil, shapeError(op, "%d heads do not divide the %d channels of x %v", heads, C, xs)
	}
	var scale_H []float32
	if scale != nil {
		if scale_H, err = floats(op, "scale", scale); err != nil {
			return nil, err
		}
		if !scale.Shape().Equal(core.Shape{heads}) {
			return nil, shapeError(op, "scale %v, want [%d]", scale.Shape(), heads)
		}
	}
	d := C / heads
	y, y_BLC := newTensor(xs...)
	be.parallelFor(xs[0]*xs[1]*heads, func(i0, i1 int) {
		for i := i0; i < i1; i++ { // i = (row, head); head i%heads is the chunk [i*d, (i+1)*d) of the data
			in, out := x_BLC[i*d:(i+1)*d], y_BLC[i*d:(i+1)*d]
			var sq float64
			for _, v := range in {
				sq += float64(v) * float64(v)
			}
			norm := max(math.Sqrt(sq), normalizeEps)
			for j, v := range in {
				out[j] = float32(float64(v) / norm)
				if scale_H != nil {
					out[j] *= scale_H[i%heads]
				}
			}
		}
	})
	return y, nil
}
