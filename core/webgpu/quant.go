package webgpu

import (
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"

	"github.com/webvar/webvar/core"
)

// Quantized weights (core.QuantHost) live in two exactly sized storage buffers, struct-of-arrays: the
// packed u32 codes and the f32 scales, bound as two inputs of the .Quant variant of shaders/matmul.wgsl,
// which dequantizes while staging w tiles. Only Linear and LinearGELU accept such a tensor, as w; other
// ops reject it.

var _ core.QuantUploader = (*Backend)(nil)

// quantBuf is the storage of a quantized weight. Views made by core.Reshape share it; Free releases both
// buffers and marks them freed for every view.
type quantBuf struct {
	scheme core.QuantScheme
	shape  core.Shape // [M, K] as quantized: a view with another shape is rejected by Linear
	codes  *gpuBuf    // [M, WordsPerRow(K)] u32
	scales *gpuBuf    // [M, QuantBlocks(K)] f32
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
	b.uploaded += n
	b.notePeakLocked(n)
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
