package webgpu

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

// Resampling ops: Upsample2x (shaders/upsample.wgsl), ResizeBicubic and ResizeArea (shaders/resize.wgsl).
// All are one invocation per output element over x viewed as [planes, H, W].

const resizeWG = 256

type upsampleKernel struct{ WG int }

// resizeKernel is a variant of shaders/resize.wgsl; Mode is "bicubic" or "area".
type resizeKernel struct {
	WG   int
	Mode string
}

// Upsample2x is nearest-neighbour 2x upsampling: x [B, C, H, W] -> y [B, C, 2H, 2W].
func (b *Backend) Upsample2x(x *core.Tensor) (*core.Tensor, error) {
	const op = "upsample2x"
	b.mu.Lock()
	defer b.mu.Unlock()
	xg, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 4 {
		return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("want x [B, C, H, W], got %v", xs)}
	}
	outShape := core.Shape{xs[0], xs[1], 2 * xs[2], 2 * xs[3]}
	n := outShape.Numel()
	out, err := b.outBuf(op, n)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		k := kernel{file: "upsample.wgsl", params: upsampleKernel{WG: resizeWG}, inputs: 1, outputs: 1}
		if err := b.dispatch(op, k, []uint32{uint32(n), uint32(xs[2]), uint32(xs[3])}, []*gpuBuf{xg, out}, grid1D(n, resizeWG)); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(outShape, out), nil
}

// resizeCheck validates x [B, C, H, W] with H, W >= 1 and an output size >= 1, as the CPU reference does,
// and that the kernel's u32 window arithmetic ((i+1)*in + out) cannot overflow.
func resizeCheck(op string, xs core.Shape, outH, outW int) error {
	if err := checkDims(op, "x", xs); err != nil {
		return err
	}
	if len(xs) != 4 || xs[2] == 0 || xs[3] == 0 || outH <= 0 || outW <= 0 {
		return &core.ShapeError{Op: op, Msg: fmt.Sprintf("want x [B, C, H, W] with H, W >= 1 and an output size >= 1, got x %v to %dx%d", xs, outH, outW)}
	}
	if uint64(outH+1)*uint64(xs[2])+uint64(outH) >= 1<<32 || uint64(outW+1)*uint64(xs[3])+uint64(outW) >= 1<<32 {
		return fmt.Errorf("%s: resizing %v to %dx%d overflows 32-bit window arithmetic: %w", op, xs, outH, outW, core.ErrUnsupported)
	}
	return nil
}

// ResizeBicubic is F.interpolate(mode='bicubic', align_corners=False, A = -0.75) for x [B, C, H, W]. The
// per-axis taps (clamped source indices and weights) are computed on the host exactly as the CPU
// reference computes them and uploaded with the op; the kernel only does the weighted sums.
func (b *Backend) ResizeBicubic(x *core.Tensor, outH, outW int) (*core.Tensor, error) {
	const op = "bicubic"
	if x == nil {
		return nil, fmt.Errorf("%s: x is nil", op)
	}
	xs := x.Shape()
	if err := resizeCheck(op, xs, outH, outW); err != nil {
		return nil, err
	}
	H, W := xs[2], xs[3]
	if H == outH && W == outW {
		// The reference copies a same-size resize without arithmetic (an Inf stays put).
		return b.copyTensor(op, x)
	}
	taps := append(bicubicTaps(H, outH), bicubicTaps(W, outW)...)
	tapsT, err := b.Upload(core.HostTensor{Shape: core.Shape{len(taps)}, Data: taps})
	if err != nil {
		return nil, fmt.Errorf("%s: uploading taps: %w", op, err)
	}
	defer b.Free(tapsT) // released once the pending work that reads it has been submitted
	return b.resize(op, x, outH, outW, tapsT, uint32(8*outH))
}

// ResizeArea is F.interpolate(mode='area'), adaptive average pooling, for x [B, C, H, W].
func (b *Backend) ResizeArea(x *core.Tensor, outH, outW int) (*core.Tensor, error) {
	const op = "area"
	if x == nil {
		return nil, fmt.Errorf("%s: x is nil", op)
	}
	if err := resizeCheck(op, x.Shape(), outH, outW); err != nil {
		return nil, err
	}
	return b.resize(op, x, outH, outW, nil, 0)
}

// resize dispatches shaders/resize.wgsl: bicubic when taps is not nil, area otherwise.
func (b *Backend) resize(op string, x *core.Tensor, outH, outW int, taps *core.Tensor, colBase uint32) (*core.Tensor, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	xg, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	outShape := core.Shape{xs[0], xs[1], outH, outW}
	n := outShape.Numel()
	out, err := b.outBuf(op, n)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return core.NewTensor(outShape, out), nil
	}
	bufs := []*gpuBuf{xg}
	k := kernel{file: "resize.wgsl", params: resizeKernel{WG: resizeWG, Mode: "area"}, inputs: 1, outputs: 1}
	if taps != nil {
		tg, err := b.storage(taps, op)
		if err != nil {
			return nil, err
		}
		bufs = append(bufs, tg)
		k = kernel{file: "resize.wgsl", params: resizeKernel{WG: resizeWG, Mode: "bicubic"}, inputs: 2, outputs: 1}
	}
	bufs = append(bufs, out)
	u := []uint32{uint32(n), uint32(xs[2]), uint32(xs[3]), uint32(outH), uint32(outW), colBase}
	if err := b.dispatch(op, k, u, bufs, grid1D(n, resizeWG)); err != nil {
		return nil, err
	}
	return core.NewTensor(outShape, out), nil
}

// copyTensor returns a copy of x.
func (b *Backend) copyTensor(op string, x *core.Tensor) (*core.Tensor, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	xg, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	n := x.Shape().Numel()
	out, err := b.outBuf(op, n)
	if err != nil {
		return nil, err
	}
	if err := b.copyBlockLocked(op, xg, out, 1, n, n, 0, n, 0); err != nil {
		return nil, err
	}
	return core.NewTensor(x.Shape(), out), nil
}

// bicubicA is the cubic convolution constant of PyTorch's bicubic mode.
const bicubicA = -0.75

// bicubicTaps returns, for every output index of one axis resized from in to out, 8 words: the four
// clamped input indices (as u32 bit patterns) and their four f32 weights, computed operation by operation
// like core/cpu/resize.go's cubicTaps (which is the spec). The words travel in a float32 host tensor
// whose bytes Upload copies verbatim; the kernel reads them as u32 and bitcasts the weights.
func bicubicTaps(in, out int) []float32 {
	scale := float32(in) / float32(out) // in the tensor dtype, like PyTorch
	taps := make([]float32, 0, 8*out)
	for i := range out {
		// One float64 expression rounded once to float32, as C++ evaluates scale * (i + 0.5) - 0.5.
		real := float32(float64(scale)*(float64(i)+0.5) - 0.5)
		fl := float32(math.Floor(float64(real)))
		t := real - fl
		u := 1 - t // PyTorch rounds 1 - t before the last two weights
		i0 := int(fl)
		for j := range 4 {
			taps = append(taps, math.Float32frombits(uint32(min(max(i0-1+j, 0), in-1))))
		}
		taps = append(taps, cubicConv2(t+1), cubicConv1(t), cubicConv1(u), cubicConv2(u+1))
	}
	return taps
}

// cubicConv1 is Keys' kernel for |x| <= 1: ((A+2)|x| - (A+3))|x|^2 + 1.
func cubicConv1(x float32) float32 { return ((bicubicA+2)*x-(bicubicA+3))*x*x + 1 }

// cubicConv2 is Keys' kernel for 1 < |x| < 2: ((A|x| - 5A)|x| + 8A)|x| - 4A.
func cubicConv2(x float32) float32 { return ((bicubicA*x-5*bicubicA)*x+8*bicubicA)*x - 4*bicubicA }
