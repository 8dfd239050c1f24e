package cpu

import (
	"math"

	"github.com/webvar/webvar/core"
)

// ResizeBicubic is F.interpolate(x, size=(outH, outW), mode='bicubic', align_corners=False) for x
// [B, C, H, W], reproducing PyTorch's CPU kernel (upsample_bicubic2d) operation by operation in float32:
//
//   - per axis, output index i samples input coordinate real = scale*(i + 0.5) - 0.5 with scale =
//     float32(in)/float32(out), not clamped to 0 (cubic taps may reach one pixel beyond the border);
//   - i0 = floor(real), t = real - i0, taps i0-1 .. i0+2 clamped to [0, in-1] (border replication), with
//     Keys' cubic weights for A = -0.75 (see cubicTaps);
//   - each of the 4 tap rows is first interpolated along x, then the 4 results are combined along y, each
//     sum accumulated left to right in float32.
//
// A 1x1 input therefore upsamples to a constant and a same-size resize is the identity (returned as a
// copy without arithmetic, which also keeps an Inf from spreading to its neighbours through 0*Inf).
func (be *Backend) ResizeBicubic(x *core.Tensor, outH, outW int) (*core.Tensor, error) {
	const op = "bicubic"
	x_BCHW, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 4 || xs[2] == 0 || xs[3] == 0 || outH <= 0 || outW <= 0 {
		return nil, shapeError(op, "want x [B, C, H, W] with H, W >= 1 and an output size >= 1, got x %v to %dx%d", xs, outH, outW)
	}
	planes, H, W := xs[0]*xs[1], xs[2], xs[3]
	y, y_BCHW := newTensor(xs[0], xs[1], outH, outW)
	if H == outH && W == outW {
		copy(y_BCHW, x_BCHW)
		return y, nil
	}
	tapsY, tapsX := cubicTaps(H, outH), cubicTaps(W, outW)
	// One work item is one output row (plane, oy).
	be.parallelFor(planes*outH, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			plane, oy := r/outH, r%outH
			in := x_BCHW[plane*H*W : (plane+1)*H*W]
			out := y_BCHW[r*outW : (r+1)*outW]
			ty := tapsY[oy]
			for ox, tx := range tapsX {
				var acc float32
				for j, iy := range ty.idx {
					row := in[iy*W : (iy+1)*W]
					v := row[tx.idx[0]]*tx.w[0] + row[tx.idx[1]]*tx.w[1] + row[tx.idx[2]]*tx.w[2] + row[tx.idx[3]]*tx.w[3]
					if j == 0 {
						acc = v * ty.w[0] // PyTorch starts from the first product, not from 0 + product
					} else {
						acc += v * ty.w[j]
					}
				}
				out[ox] = acc
			}
		}
	})
	return y, nil
}

// bicubicA is the cubic convolution constant of PyTorch's bicubic mode (Keys' kernel with A = -0.75).
const bicubicA = -0.75

// cubicTap is one output index's four input indices (already clamped to the border) and their weights.
type cubicTap struct {
	idx [4]int
	w   [4]float32
}

// cubicTaps returns the taps of every output index for a bicubic resize of one axis from in to out.
func cubicTaps(in, out int) []cubicTap {
	// PyTorch computes the scale in the tensor's dtype (float(in)/out), not as the exact ratio: for 16 -> 13
	// the float32 quotient differs from the real one at the 1e-7 level, which is enough to move sample
	// positions, so the spec keeps float32.
	scale := float32(in) / float32(out)
	taps := make([]cubicTap, out)
	for i := range taps {
		// In C++ "scale * (i + 0.5) - 0.5" is evaluated in double (i + 0.5 is a double) and rounded to
		// float once; float64 here reproduces that rounding exactly.
		real := float32(float64(scale)*(float64(i)+0.5) - 0.5)
		fl := float32(math.Floor(float64(real)))
		t := real - fl
		// PyTorch writes the last two weights in terms of 1 - t (w3 = cc2((1-t) + 1), rounding 1-t first),
		// which differs from cc2(2-t) in the last bit for some t.
		u := 1 - t
		taps[i].w = [4]float32{cubicConv2(t + 1), cubicConv1(t), cubicConv1(u), cubicConv2(u + 1)}
		i0 := int(fl)
		for j := range 4 {
			taps[i].idx[j] = min(max(i0-1+j, 0), in-1)
		}
	}
	return taps
}

// cubicConv1 is Keys' kernel for |x| <= 1: ((A+2)|x| - (A+3))|x|^2 + 1.
func cubicConv1(x float32) float32 { return ((bicubicA+2)*x-(bicubicA+3))*x*x + 1 }

// cubicConv2 is Keys' kernel for 1 < |x| < 2: ((A|x| - 5A)|x| + 8A)|x| - 4A.
func cubicConv2(x float32) float32 { return ((bicubicA*x-5*bicubicA)*x+8*bicubicA)*x - 4*bicubicA }

// ResizeArea is F.interpolate(x, size=(outH, outW), mode='area'), which is adaptive_avg_pool2d: output
// (i, j) is the mean of input rows [startY, endY) and columns [startX, endX) given by areaWindow. The sum is
// accumulated in float32 over the window in row-major order and divided by the row count and then by the
// column count, as PyTorch's CPU kernel does. Any sizes are accepted, including out > in (windows then
// hold one or two input pixels).
func (be *Backend) ResizeArea(x *core.Tensor, outH, outW int) (*core.Tensor, error) {
	const op = "area"
	x_BCHW, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 4 || xs[2] == 0 || xs[3] == 0 || outH <= 0 || outW <= 0 {
		return nil, shapeError(op, "want x [B, C, H, W] with H, W >= 1 and an output size >= 1, got x %v to %dx%d", xs, outH, outW)
	}
	planes, H, W := xs[0]*xs[1], xs[2], xs[3]
	y, y_BCHW := newTensor(xs[0], xs[1], outH, outW)
	be.parallelFor(planes*outH, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			plane, oy := r/outH, r%outH
			in := x_BCHW[plane*H*W : (plane+1)*H*W]
			out := y_BCHW[r*outW : (r+1)*outW]
			y0, y1 := areaWindow(oy, H, outH)
			for ox := range out {
				x0, x1 := areaWindow(ox, W, outW)
				var sum float32
				for iy := y0; iy < y1; iy++ {
					for _, v := range in[iy*W+x0 : iy*W+x1] {
						sum += v
					}
				}
				out[ox] = sum / float32(y1-y0) / float32(x1-x0)
			}
		}
	})
	return y, nil
}

// areaWindow is the input range [start, end) averaged by output index i of an adaptive pooling from in to
// out: start = floor(i*in/out), end = ceil((i+1)*in/out), in integer arithmetic. Neighbouring windows
// overlap when out does not divide in (16 -> 13: window 0 is [0, 2), window 1 is [1, 3)).
func areaWindow(i, in, out int) (start, end int) {
	return i * in / out, ((i+1)*in + out - 1) / out
}
