package webgpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// Conv2d runs shaders/conv2d.wgsl, a tiled implicit GEMM (see the kernel's header for the scheme).

// convKernel is a variant of shaders/conv2d.wgsl: BM output channels x BN pixels per workgroup of WG
// invocations, each computing TM channels x 4 pixels, K staged BK input channels at a time.
type convKernel struct {
	WG, BM, BN, BK, TM int
	Bias               bool
}

// Three tile shapes. Wide, for the usual layers: 64 channels x 128 pixels, 8 x 4 outputs per invocation
// (32 accumulators: enough reuse of each staged value without spilling registers on GPUs). Narrow, for
// layers with few output channels (the 3-channel image head), where a 64-channel block would mostly
// compute padding: 16 channels x 128 pixels, 4 x 4 per invocation. Small, for layers whose wide grid
// would have fewer than convMinWide workgroups (the decoder's low resolutions: a 640-channel 3x3 layer at
// 16x16 is 20 wide workgroups, which leave most of a large GPU idle; an H100 ran it at 2.7 TFLOP/s
// against 25.7 at 256x256): 32 x 32, 4 x 4 per invocation, 8x the workgroups. Measured on lavapipe with a
// 64 -> 64 3x3 layer at 64x64, the wide shape did about 1.5x the work per CPU-second of a 64 x 64 tile
// with 4 x 4 per invocation. Every shape walks K in the same order (BK = 16), so the choice never
// changes a result. Constraints (TestConvVariants): (BM/TM) * (BN/4) == WG, WG a multiple of BN, TM a
// multiple of 4, whole vec4 loads per invocation, and 4*BK*(BM+BN) bytes of workgroup memory within
// WebGPU's default 16 KiB.
func convTile(co, pixels, images int) convKernel {
	if co <= 16 {
		return convKernel{WG: 128, BM: 16, BN: 128, BK: 16, TM: 4} // narrow
	}
	wide := convKernel{WG: 256, BM: 64, BN: 128, BK: 16, TM: 8}
	if (pixels+wide.BN-1)/wide.BN*((co+wide.BM-1)/wide.BM)*images < convMinWide {
		return convKernel{WG: 64, BM: 32, BN: 32, BK: 16, TM: 4} // small
	}
	return wide
}

// convMinWide is the fewest workgroups a layer fills with wide tiles before it takes small ones.
const convMinWide = 256

// Conv2d is a 2-D cross-correlation (PyTorch nn.Conv2d, dilation 1, groups 1): x [B, Ci, H, W], w [Co, Ci,
// kh, kw], bias [Co] or nil, stride >= 1, zero padding {top, left, bottom, right}; out [B, Co, Ho, Wo].
func (b *Backend) Conv2d(x, w, bias *core.Tensor, stride int, pad [4]int) (*core.Tensor, error) {
	const op = "conv2d"
	b.mu.Lock()
	defer b.mu.Unlock()
	xg, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	wg, err := b.operand(op, "w", w)
	if err != nil {
		return nil, err
	}
	xs, ws := x.Shape(), w.Shape()
	if len(xs) != 4 || len(ws) != 4 || ws[1] != xs[1] {
		return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("want x [B, Ci, H, W] and w [Co, Ci, kh, kw], got x %v and w %v", xs, ws)}
	}
	B, Ci, H, W := xs[0], xs[1], xs[2], xs[3]
	Co, kh, kw := ws[0], ws[2], ws[3]
	top, left, bottom, right := pad[0], pad[1], pad[2], pad[3]
	if stride < 1 {
		return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("stride %d, want >= 1", stride)}
	}
	if top < 0 || left < 0 || bottom < 0 || right < 0 {
		return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("padding %v has a negative entry", pad)}
	}
	if Ci == 0 || Co == 0 || kh == 0 || kw == 0 || H+top+bottom < kh || W+left+right < kw {
		return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("kernel %v does not fit x %v padded by %v", ws, xs, pad)}
	}
	var bg *gpuBuf
	if bias != nil {
		if bg, err = b.operand(op, "b", bias); err != nil {
			return nil, err
		}
		if !bias.Shape().Equal(core.Shape{Co}) {
			return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("b %v, want [%d] for w %v", bias.Shape(), Co, ws)}
		}
	}
	Ho := (H+top+bottom-kh)/stride + 1
	Wo := (W+left+right-kw)/stride + 1
	P := Ho * Wo
	outShape := core.Shape{B, Co, Ho, Wo}
	out, err := b.outBuf(op, outShape.Numel())
	if err != nil {
		return nil, err
	}
	if B == 0 {
		return core.NewTensor(outShape, out), nil
	}
	// The kernel's (signed) input coordinates are i32: keep every offset of the padded image in range.
	if uint64(Ho)*uint64(stride)+uint64(top+bottom+kh) >= 1<<31 || uint64(Wo)*uint64(stride)+uint64(left+right+kw) >= 1<<31 {
		return nil, fmt.Errorf("%s: x %v with stride %d and padding %v is too large: %w", op, xs, stride, pad, core.ErrUnsupported)
	}

	k := convTile(Co, P, B)
	k.Bias = bg != nil
	bufs := []*gpuBuf{xg, wg}
	if bg != nil {
		bufs = append(bufs, bg)
	}
	bufs = append(bufs, out)
	grid := [3]uint32{uint32((P + k.BN - 1) / k.BN), uint32((Co + k.BM - 1) / k.BM), uint32(B)}
	u := []uint32{uint32(Ci), uint32(H), uint32(W), uint32(Co), uint32(Wo), uint32(P),
		uint32(kh), uint32(kw), uint32(stride), uint32(top), uint32(left)}
	kern := kernel{file: "conv2d.wgsl", params: k, inputs: len(bufs) - 1, outputs: 1}
	if err := b.dispatch(op, kern, u, bufs, grid); err != nil {
		return nil, err
	}
	return core.NewTensor(outShape, out), nil
}
