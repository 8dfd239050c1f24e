package webgpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// Copy ops: SliceLast, Concat, Transpose12, WriteRows and Zeros (shaders/copy.wgsl, shaders/transpose.wgsl,
// shaders/fill.wgsl), plus the argument checks that every op of this package's spatial families shares.

const copyWG = 256

// copyKernel is the variant of shaders/copy.wgsl, fillKernel of shaders/fill.wgsl.
type (
	copyKernel struct{ WG int }
	fillKernel struct{ WG int }
)

// transposeKernel is the variant of shaders/transpose.wgsl: T x T tiles (T*T invocations).
type transposeKernel struct{ T int }

const transposeTile = 16

// outBuf allocates the output of n elements (at least one word: WebGPU has no empty bindings).
func (b *Backend) outBuf(op string, n int) (*gpuBuf, error) {
	return b.alloc(uint64(max(n, 1))*4, op)
}

// copyBlockLocked records dst[r*dstStride + dstOff + c] = src[r*srcStride + srcOff + c] for r < rows,
// c < width (elements). On failure dst is left to the caller: it is a new output for most ops, which
// free it, and the caller's own tensor for WriteRows.
func (b *Backend) copyBlockLocked(op string, src, dst *gpuBuf, rows, width, srcStride, srcOff, dstStride, dstOff int) error {
	n := rows * width
	if n == 0 {
		return nil
	}
	if uint64(rows)*uint64(max(srcStride, dstStride)) >= 1<<32 {
		return fmt.Errorf("%s: %d rows of %d elements exceed 32-bit indexing: %w", op, rows, max(srcStride, dstStride), core.ErrUnsupported)
	}
	u := []uint32{uint32(n), uint32(width), uint32(srcStride), uint32(srcOff), uint32(dstStride), uint32(dstOff)}
	k := kernel{file: "copy.wgsl", params: copyKernel{WG: copyWG}, inputs: 1, outputs: 1}
	return b.record(op, k, u, []*gpuBuf{src, dst}, grid1D(n, copyWG))
}

// SliceLast returns a copy of x[..., off:off+n]: x viewed as [rows, C], a column block of every row.
func (b *Backend) SliceLast(x *core.Tensor, off, n int) (*core.Tensor, error) {
	const op = "slice"
	b.mu.Lock()
	defer b.mu.Unlock()
	xg, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) < 1 {
		return nil, &core.ShapeError{Op: op, Msg: "cannot slice a scalar"}
	}
	C := xs[len(xs)-1]
	if off < 0 || n < 0 || off+n > C {
		return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("range [%d, %d) is outside the last dimension of x %v", off, off+n, xs)}
	}
	outShape := append(xs[:len(xs)-1:len(xs)-1], n)
	rows := 0
	if C > 0 {
		rows = xs.Numel() / C
	}
	out, err := b.outBuf(op, rows*n)
	if err != nil {
		return nil, err
	}
	if err := b.copyBlockLocked(op, xg, out, rows, n, C, off, n, 0); err != nil {
		b.freeLocked(out)
		return nil, err
	}
	return core.NewTensor(outShape, out), nil
}

// Concat joins ts along axis (negative counts from the end). With outer = the product of the dimensions
// before axis, every tensor is a [outer, width] matrix and the output's rows are the inputs' rows side by
// side, so the op is one block copy per input into its column range.
func (b *Backend) Concat(axis int, ts ...*core.Tensor) (*core.Tensor, error) {
	const op = "concat"
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(ts) == 0 {
		return nil, &core.ShapeError{Op: op, Msg: "no tensors"}
	}
	bufs := make([]*gpuBuf, len(ts))
	for i, t := range ts {
		g, err := b.operand(op, "input", t)
		if err != nil {
			return nil, err
		}
		bufs[i] = g
	}
	first := ts[0].Shape()
	rank := len(first)
	if axis < -rank || axis >= rank {
		return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("axis %d out of range for rank-%d tensors", axis, rank)}
	}
	if axis < 0 {
		axis += rank
	}
	outShape := first.Clone()
	outShape[axis] = 0
	for _, t := range ts {
		s := t.Shape()
		if len(s) != rank {
			return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("ranks differ: %v and %v", first, s)}
		}
		for d := range rank {
			if d != axis && s[d] != first[d] {
				return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("shapes %v and %v differ outside axis %d", first, s, axis)}
			}
		}
		outShape[axis] += s[axis]
	}
	total := outShape.Numel()
	out, err := b.outBuf(op, total)
	if err != nil {
		return nil, err
	}
	if total > 0 {
		outer := first[:axis].Numel()
		rowLen := total / outer
		off := 0
		for i, t := range ts {
			width := t.Shape().Numel() / outer
			if err := b.copyBlockLocked(op, bufs[i], out, outer, width, width, 0, rowLen, off); err != nil {
				b.freeLocked(out)
				return nil, err
			}
			off += width
		}
	}
	return core.NewTensor(outShape, out), nil
}

// Transpose12 swaps the last two dimensions of x [A, M, N]: y [A, N, M], through 16x16 tiles in workgroup
// memory (shaders/transpose.wgsl).
func (b *Backend) Transpose12(x *core.Tensor) (*core.Tensor, error) {
	const op = "transpose"
	b.mu.Lock()
	defer b.mu.Unlock()
	xg, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 3 {
		return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("want a 3-D tensor, got %v", xs)}
	}
	A, M, N := xs[0], xs[1], xs[2]
	out, err := b.outBuf(op, A*M*N)
	if err != nil {
		return nil, err
	}
	outShape := core.Shape{A, N, M}
	if A*M*N == 0 {
		return core.NewTensor(outShape, out), nil
	}
	T := transposeTile
	k := kernel{file: "transpose.wgsl", params: transposeKernel{T: T}, inputs: 1, outputs: 1}
	// The grid's z dimension holds at most 65535 matrices: split larger batches over several dispatches.
	maxZ := int(b.limits.MaxComputeWorkgroupsPerDimension)
	for a0 := 0; a0 < A; a0 += maxZ {
		grid := [3]uint32{uint32((N + T - 1) / T), uint32((M + T - 1) / T), uint32(min(maxZ, A-a0))}
		if err := b.dispatch(op, k, []uint32{uint32(M), uint32(N), uint32(a0)}, []*gpuBuf{xg, out}, grid); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(outShape, out), nil
}

// WriteRows copies src [B, n, C] into rows [off, off+n) of dst [B, S, C] in place: one block copy with
// B rows of n*C elements, strided by S*C in dst. WebGPU orders it after the pending dispatches that read
// dst and before later ones.
func (b *Backend) WriteRows(dst, src *core.Tensor, off int) error {
	const op = "write-rows"
	b.mu.Lock()
	defer b.mu.Unlock()
	dg, err := b.operand(op, "dst", dst)
	if err != nil {
		return err
	}
	sg, err := b.operand(op, "src", src)
	if err != nil {
		return err
	}
	ds, ss := dst.Shape(), src.Shape()
	if len(ds) != 3 || len(ss) != 3 || ds[0] != ss[0] || ds[2] != ss[2] {
		return &core.ShapeError{Op: op, Msg: fmt.Sprintf("want dst [B, S, C] and src [B, n, C], got dst %v, src %v", ds, ss)}
	}
	B, S, n, C := ds[0], ds[1], ss[1], ds[2]
	if off < 0 || off+n > S {
		return &core.ShapeError{Op: op, Msg: fmt.Sprintf("rows [%d, %d) are outside dst %v", off, off+n, ds)}
	}
	if dg == sg {
		return fmt.Errorf("%s: src and dst share a buffer: %w", op, core.ErrUnsupported)
	}
	return b.copyBlockLocked(op, sg, dg, B, n*C, n*C, 0, S*C, off*C)
}

// Zeros returns a new tensor of zeros (shaders/fill.wgsl: the buffer may come from the pool).
func (b *Backend) Zeros(shape core.Shape) (*core.Tensor, error) {
	const op = "zeros"
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(); err != nil {
		return nil, err
	}
	if err := checkDims(op, "shape", shape); err != nil {
		return nil, err
	}
	n := shape.Numel()
	out, err := b.outBuf(op, n)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		k := kernel{file: "fill.wgsl", params: fillKernel{WG: copyWG}, inputs: 0, outputs: 1}
		if err := b.dispatch(op, k, []uint32{uint32(n)}, []*gpuBuf{out}, grid1D(n, copyWG)); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(shape, out), nil
}
