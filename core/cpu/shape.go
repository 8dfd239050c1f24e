package cpu

import "github.com/webvar/webvar/core"

// SliceLast returns a copy of x[..., off:off+n].
func (be *Backend) SliceLast(x *core.Tensor, off, n int) (*core.Tensor, error) {
	const op = "slice"
	x_NC, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) < 1 {
		return nil, shapeError(op, "cannot slice a scalar")
	}
	C := xs[len(xs)-1]
	if off < 0 || n < 0 || off+n > C {
		return nil, shapeError(op, "range [%d, %d) is outside the last dimension of x %v", off, off+n, xs)
	}
	outShape := append(xs[:len(xs)-1:len(xs)-1], n) // full slice expression: append copies, xs is untouched
	y, y_NM := newTensor(outShape...)
	if n == 0 {
		return y, nil
	}
	be.parallelFor(len(y_NM)/n, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			copy(y_NM[r*n:(r+1)*n], x_NC[r*C+off:r*C+off+n])
		}
	})
	return y, nil
}

// Concat joins ts along axis (negative axis counts from the end, as in torch.cat); every other dimension
// must match. The result is a new tensor even for a single input.
func (be *Backend) Concat(axis int, ts ...*core.Tensor) (*core.Tensor, error) {
	const op = "concat"
	if len(ts) == 0 {
		return nil, shapeError(op, "no tensors")
	}
	datas := make([][]float32, len(ts))
	for i, t := range ts {
		d, err := floats(op, "input", t)
		if err != nil {
			return nil, err
		}
		datas[i] = d
	}
	first := ts[0].Shape()
	rank := len(first)
	if axis < -rank || axis >= rank {
		return nil, shapeError(op, "axis %d out of range for rank-%d tensors", axis, rank)
	}
	if axis < 0 {
		axis += rank
	}
	outShape := first.Clone()
	outShape[axis] = 0
	for _, t := range ts {
		s := t.Shape()
		if len(s) != rank {
			return nil, shapeError(op, "ranks differ: %v and %v", first, s)
		}
		for d := range rank {
			if d != axis && s[d] != first[d] {
				return nil, shapeError(op, "shapes %v and %v differ outside axis %d", first, s, axis)
			}
		}
		outShape[axis] += s[axis]
	}

	// View every tensor as [outer, chunk] with outer = the product of the dimensions before axis; output row o
	// is the concatenation of row o of every input.
	outer := 1
	for _, d := range first[:axis] {
		outer *= d
	}
	y, out := newTensor(outShape...)
	if len(out) == 0 {
		return y, nil
	}
	rowLen := len(out) / outer
	be.parallelFor(outer, func(o0, o1 int) {
		for o := o0; o < o1; o++ {
			dst := out[o*rowLen : (o+1)*rowLen]
			for _, d := range datas {
				chunk := len(d) / outer
				dst = dst[copy(dst, d[o*chunk:(o+1)*chunk]):]
			}
		}
	})
	return y, nil
}

// Transpose12 swaps the last two dimensions of a 3-D tensor: x [A, M, N] -> y [A, N, M], y[a, n, m] =
// x[a, m, n].
func (be *Backend) Transpose12(x *core.Tensor) (*core.Tensor, error) {
	const op = "transpose"
	x_AMN, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 3 {
		return nil, shapeError(op, "want a 3-D tensor, got %v", xs)
	}
	A, M, N := xs[0], xs[1], xs[2]
	y, y_ANM := newTensor(A, N, M)
	// One work item is one output row (a, n); it reads column n of x[a], a strided gather.
	be.parallelFor(A*N, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			a, n := r/N, r%N
			row := y_ANM[r*M : (r+1)*M]
			for m := range row {
				row[m] = x_AMN[(a*M+m)*N+n]
			}
		}
	})
	return y, nil
}

// Zeros returns a new tensor of the given shape filled with zeros.
func (be *Backend) Zeros(shape core.Shape) (*core.Tensor, error) {
	if err := checkDims("zeros", "shape", shape); err != nil {
		return nil, err
	}
	y, _ := newTensor(shape...)
	return y, nil
}

// WriteRows copies src [B, n, C] into dst [B, S, C] in place: dst[b, off+i, c] = src[b, i, c] for i < n.
// It is the one op that writes into an existing tensor (a key/value cache filled scale by scale).
func (be *Backend) WriteRows(dst, src *core.Tensor, off int) error {
	const op = "write-rows"
	dst_BSC, err := floats(op, "dst", dst)
	if err != nil {
		return err
	}
	src_BNC, err := floats(op, "src", src)
	if err != nil {
		return err
	}
	ds, ss := dst.Shape(), src.Shape()
	if len(ds) != 3 || len(ss) != 3 || ds[0] != ss[0] || ds[2] != ss[2] {
		return shapeError(op, "want dst [B, S, C] and src [B, n, C], got dst %v, src %v", ds, ss)
	}
	B, S, n, C := ds[0], ds[1], ss[1], ds[2]
	if off < 0 || off+n > S {
		return shapeError(op, "rows [%d, %d) are outside dst %v", off, off+n, ds)
	}
	for b := range B {
		copy(dst_BSC[(b*S+off)*C:(b*S+off+n)*C], src_BNC[b*n*C:(b+1)*n*C])
	}
	return nil
}
