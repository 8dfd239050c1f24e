package webgpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// matmulKernel is a variant of shaders/matmul.wgsl (64x64 output tiles, 16x16 invocations of contiguous
// 4x4 outputs, slices staged k-major as vec4s).
type matmulKernel struct {
	Bias  bool   // y += b[m]: a third input binding
	GELU  string // "" or geluOf("v"): the GELU applied at the store (the MLP's fc1)
	Quant bool   // w is quantized: codes and scales bindings instead of an f32 w (needs TK = 16)
	TK    int    // K slice staged in workgroup memory per step
}

const (
	matmulTile = 64 // output rows and columns per workgroup (fixed in the kernel)
	// matmulTK = 16 stages 2 x 16 x 17 vec4s (8.5 KiB) per slice, about half the 16 KiB of workgroup memory
	// WebGPU guarantees; 32 would just exceed it because of the padded rows.
	matmulTK = 16
)

// Linear is y = x @ w^T + b: x [..., K], w [M, K], b [M] or nil; y [..., M].
func (b *Backend) Linear(x, w, bias *core.Tensor) (*core.Tensor, error) {
	return b.linear("linear", x, w, bias, false)
}

// LinearGELU is GELUTanh(Linear(x, w, b)) with the GELU applied as the matmul stores its tile
// (core.FusedLinearGELU).
func (b *Backend) LinearGELU(x, w, bias *core.Tensor) (*core.Tensor, error) {
	return b.linear("linear+gelu", x, w, bias, true)
}

// linear runs shaders/matmul.wgsl for an f32 w or a quantized one (from UploadQuant, quant.go): only the
// weight's bindings and the kernel variant differ.
func (b *Backend) linear(op string, x, w, bias *core.Tensor, gelu bool) (*core.Tensor, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	xb, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	act := "" // the store's activation (matmulKernel.GELU)
	if gelu {
		act = geluOf("v")
	}
	var wbufs []*gpuBuf
	bits := 0 // code width of a quantized w
	if q, ok := quantStorage(w); ok {
		if q.codes.freed || q.scales.freed {
			return nil, fmt.Errorf("%s: quantized w %v used after Free", op, w.Shape())
		}
		if !w.Shape().Equal(q.shape) {
			return nil, linalgShapeError(op, "quantized w viewed as %v, but it was quantized as %v", w.Shape(), q.shape)
		}
		wbufs, bits = []*gpuBuf{q.codes, q.scales}, q.scheme.Bits()
	} else {
		wb, err := b.operand(op, "w", w)
		if err != nil {
			return nil, err
		}
		wbufs = []*gpuBuf{wb}
	}
	xs, ws := x.Shape(), w.Shape()
	if len(xs) < 1 || len(ws) != 2 {
		return nil, linalgShapeError(op, "want x [..., K] and w [M, K], got x %v and w %v", xs, ws)
	}
	M, K := ws[0], ws[1]
	if xs[len(xs)-1] != K || K == 0 || M == 0 {
		return nil, linalgShapeError(op, "x %v and w %v: want x [..., K] and w [M, K] with K, M >= 1", xs, ws)
	}
	bufs := append([]*gpuBuf{xb}, wbufs...)
	if bias != nil {
		bb, err := b.operand(op, "b", bias)
		if err != nil {
			return nil, err
		}
		if !bias.Shape().Equal(core.Shape{M}) {
			return nil, linalgShapeError(op, "b %v, want [%d] for w %v", bias.Shape(), M, ws)
		}
		bufs = append(bufs, bb)
	}
	N := xs.Numel() / K
	outShape := append(xs[:len(xs)-1:len(xs)-1], M) // full slice expression: append copies, xs is untouched

	gridX, gridY := (M+matmulTile-1)/matmulTile, (N+matmulTile-1)/matmulTile
	if limit := int(b.limits.MaxComputeWorkgroupsPerDimension); gridX > limit || gridY > limit {
		return nil, fmt.Errorf("%s: x %v and w %v need %dx%d tiles, over this device's %d workgroups per dimension: %w",
			op, xs, ws, gridX, gridY, limit, core.ErrUnsupported)
	}
	out, err := b.alloc(uint64(max(N*M, 1))*4, op)
	if err != nil {
		return nil, err
	}
	if N == 0 {
		return core.NewTensor(outShape, out), nil
	}
	u := []uint32{uint32(N), uint32(M), uint32(K), uint32(bits), uint32(K)}
	splits, ks := matmulSplits(gridX*gridY, K)
	if splits == 1 {
		bufs = append(bufs, out)
		params := matmulKernel{Bias: bias != nil, GELU: act, Quant: bits != 0, TK: matmulTK}
		k := kernel{file: "matmul.wgsl", params: params, inputs: len(bufs) - 1, outputs: 1}
		if err := b.dispatch(op, k, u, bufs, [3]uint32{uint32(gridX), uint32(gridY), 1}); err != nil {
			return nil, err
		}
		return core.NewTensor(outShape, out), nil
	}
	// Split K: partial products, then their sum with the bias and GELU (matmul_reduce.wgsl).
	part, err := b.alloc(uint64(splits*N*M)*4, op+" partial products")
	if err != nil {
		b.freeLocked(out)
		return nil, err
	}
	defer b.freeLocked(part) // the reduction still reads it: the pool hands it out only after that
	u[4] = uint32(ks)
	wins := bufs[1 : 1+len(wbufs)]
	k := kernel{file: "matmul.wgsl", params: matmulKernel{Quant: bits != 0, TK: matmulTK}, inputs: 1 + len(wins), outputs: 1}
	if err := b.record(op, k, u, append(append([]*gpuBuf{xb}, wins...), part), [3]uint32{uint32(gridX), uint32(gridY), uint32(splits)}); err != nil {
		b.freeLocked(out)
		return nil, err
	}
	rin := []*gpuBuf{part}
	if bias != nil {
		rin = append(rin, bufs[len(bufs)-1])
	}
	rk := kernel{file: "matmul_reduce.wgsl", params: matmulReduceKernel{WG: 256, Bias: bias != nil, GELU: act}, inputs: len(rin), outputs: 1}
	if err := b.dispatch(op, rk, []uint32{uint32(N * M), uint32(M), uint32(splits), 0}, append(rin, out), grid1D(N*M, 256)); err != nil {
		return nil, err
	}
	return core.NewTensor(outShape, out), nil
}

// matmulReduceKernel is a variant of shaders/matmul_reduce.wgsl.
type matmulReduceKernel struct {
	WG   int
	Bias bool
	GELU string // as matmulKernel's
}

// matmulSplits returns how many K ranges (of ks values each, a multiple of 32) a Linear of the given
// number of 64x64 output tiles is split into: enough for about matmulFill workgroups, with ranges of at
// least 256 values (16 slices). On an H100, VAR-d16's first scales (one or two token rows: fc2 is 16
// workgroups each walking K = 4096) were latency-bound at ~12 ms per scale before this.
func matmulSplits(tiles, K int) (splits, ks int) {
	if tiles >= matmulFill {
		return 1, K
	}
	splits = min((matmulFill+tiles-1)/tiles, K/256)
	if splits <= 1 {
		return 1, K
	}
	ks = ((K+splits-1)/splits + 31) / 32 * 32
	return (K + ks - 1) / ks, ks
}

// matmulFill is the number of workgroups split K aims for.
const matmulFill = 256

func linalgShapeError(op, format string, args ...any) error {
	return &core.ShapeError{Op: op, Msg: fmt.Sprintf(format, args...)}
}
