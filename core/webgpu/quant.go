package webgpu

import (
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"

	"github.com/webvar/webvar/core"
)

// Quantized weights (core.QuantHost) live in two exactly sized storage buffers, struct-of-arrays: the
// packed u32 codes and the f32 scales, bound as two inputs of shaders/matmul_q.wgsl, which dequantizes
// while staging w tiles. Only Linear accepts such a tensor, as w; other ops reject it as not a webgpu
// tensor.

var _ core.QuantUploader = (*Backend)(nil)

// quantBuf is the storage of a quantized weight. Views made by core.Reshape share it; Free releases both
// buffers and marks them freed for every view.
type quantBuf struct {
	scheme core.QuantScheme
	shape  core.Shape // [M, K] as quantized: a view with another shape is rejected by Linear
	codes  *gpuBuf    // [M, WordsPerRow(K)] u32
	scales *gpuBuf    // [M, QuantBlocks(K)] f32
}

// matmulQKernel is a variant of shaders/matmul_q.wgsl (tiles as matmulKernel, K slices of 16). The code
// width is a uniform, not a variant: fewer pipelines to compile.
type matmulQKernel struct {
	Bias bool // y += b[m]: a bias binding after the scales
}

// UploadQuant validates q and copies its codes and scales into two new buffers.
func (b *Backend) UploadQuant(q core.QuantHost) (*core.Tensor, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(); err != nil {
		return nil, err
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("upload quantized: %w", err)
	}
	what := fmt.Sprintf("upload %v weight %v", q.Scheme, q.Shape)
	codes, err := b.uploadBytesLocked(wgpu.ToBytes(q.Codes), what+": codes")
	if err != nil {
		return nil, err
	}
	scales, err := b.uploadBytesLocked(wgpu.ToBytes(q.Scales), what+": scales")
	if err != nil {
		b.freeLocked(codes)
		return nil, err
	}
	return core.NewTensor(q.Shape, &quantBuf{scheme: q.Scheme, shape: q.Shape.Clone(), codes: codes, scales: scales}), nil
}

// uploadBytesLocked copies data into a new exactly sized storage buffer (as Upload does, never a pooled
// one; freeLocked releases it rather than pooling it). Empty data gets a 4-byte buffer, as bindings
// cannot be empty.
func (b *Backend) uploadBytesLocked(data []byte, what string) (*gpuBuf, error) {
	if len(data) == 0 {
		data = make([]byte, 4)
	}
	n := uint64(len(data))
	if n > b.limits.MaxStorageBufferBindingSize {
		return nil, fmt.Errorf("%s: %d bytes, over this device's storage binding limit of %d", what, n, b.limits.MaxStorageBufferBindingSize)
	}
	buf, err := b.dev.CreateBufferInit(&wgpu.BufferInitDescriptor{Label: what, Contents: data,
		Usage: wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	b.live += n
	b.peak = max(b.peak, b.live+b.pooled)
	return &gpuBuf{buf: buf, bytes: n}, nil
}

// freeQuantLocked releases both buffers of a quantized weight (Free's case for quantized storage).
func (b *Backend) freeQuantLocked(q *quantBuf) {
	b.freeLocked(q.codes)
	b.freeLocked(q.scales)
}

// quantStorage returns w's quantized storage, if it has one (Linear's dispatch).
func quantStorage(w *core.Tensor) (*quantBuf, bool) {
	if w == nil {
		return nil, false
	}
	q, ok := w.Storage().(*quantBuf)
	return q, ok
}

// linearQuant is Linear for a quantized w [M, K]: y = x @ dequant(w)^T + b, checked like Linear.
func (b *Backend) linearQuant(x, w *core.Tensor, q *quantBuf, bias *core.Tensor) (*core.Tensor, error) {
	const op = "linear"
	b.mu.Lock()
	defer b.mu.Unlock()
	xb, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	if q.codes.freed || q.scales.freed {
		return nil, fmt.Errorf("%s: quantized w %v used after Free", op, w.Shape())
	}
	xs, ws := x.Shape(), w.Shape()
	if !ws.Equal(q.shape) {
		return nil, linalgShapeError(op, "quantized w viewed as %v, but it was quantized as %v", ws, q.shape)
	}
	if len(xs) < 1 {
		return nil, linalgShapeError(op, "want x [..., K] and w [M, K], got x %v and w %v", xs, ws)
	}
	M, K := ws[0], ws[1]
	if xs[len(xs)-1] != K || K == 0 || M == 0 {
		return nil, linalgShapeError(op, "x %v and w %v: want x [..., K] and w [M, K] with K, M >= 1", xs, ws)
	}
	bufs := []*gpuBuf{xb, q.codes, q.scales}
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
	if N > 0 {
		bufs = append(bufs, out)
		k := kernel{file: "matmul_q.wgsl", params: matmulQKernel{Bias: bias != nil}, inputs: len(bufs) - 1, outputs: 1}
		u := []uint32{uint32(N), uint32(M), uint32(K), uint32(q.scheme.Bits())}
		if err := b.dispatch(op, k, u, bufs, [3]uint32{uint32(gridX), uint32(gridY), 1}); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(outShape, out), nil
}
