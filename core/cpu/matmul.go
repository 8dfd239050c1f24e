package cpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// Linear is y = x @ w^T + b over the last dimension (PyTorch F.linear): x [..., K], w [M, K], b [M] or nil;
// y [..., M].
//
// Spec: y[n, m] = (sum over k = 0..K-1 of x[n, k]*w[m, k]) + b[m], the sum accumulated in float32 in
// increasing k and the bias added last. PyTorch also accumulates in float32, in an order chosen by its
// BLAS, so the two agree to float32 rounding (not bit for bit).
func (be *Backend) Linear(x, w, b *core.Tensor) (*core.Tensor, error) {
	const op = "linear"
	q, quant := quantWeight(w) // w from UploadQuant (quant.go)
	var w_MK []float32
	if !quant {
		var err error
		if w_MK, err = floats(op, "w", w); err != nil {
			return nil, err
		}
	} else if !w.Shape().Equal(q.Shape) {
		// A core.Reshape view of a quantized weight keeps the element count but not the packed layout.
		return nil, shapeError(op, "quantized w viewed as %v, but it was quantized as %v", w.Shape(), q.Shape)
	}
	a, err := linearArgs(op, x, w.Shape(), b)
	if err != nil {
		return nil, err
	}
	y, y_NM := newTensor(a.outShape...)
	done := false
	if be.offload != nil {
		if done, err = be.offloadLinear(w, w_MK, q, a, y_NM); err != nil {
			return nil, fmt.Errorf("%s on %s: %w", op, be.offload.Name(), err)
		}
	}
	gemv := !done && be.gemvPath != nil && a.N <= gemvMaxRows
	var pre bPacker
	if !done && !gemv && be.kernel != nil && a.N <= prepackRows {
		if quant {
			pre = be.packs.get(w, qpackedBytes(q.Scheme, a.M, a.K), func() packedWeight { return newQPacked(q) })
		} else {
			pre = be.packs.get(w, prepackedBytes(a.M, a.K), func() packedWeight {
				return newPrepacked(bRows{f: w_MK, ld: a.K}, a.M, a.K)
			})
		}
	}
	switch {
	case done:
	case gemv:
		be.gemv(a.x_NK, a.N, a.K, w_MK, q, quant, a.M, y_NM)
	case pre != nil:
		be.gemmPacked(be.kernel, true, a.x_NK, a.K, a.N, pre, a.M, a.K, y_NM, a.M, nil)
	case quant:
		be.gemmNTQuant(a.x_NK, a.N, q, y_NM)
	default:
		be.gemmNT(a.x_NK, a.N, w_MK, a.M, a.K, y_NM, a.M)
	}
	if a.b_M != nil {
		be.parallelFor(a.N, func(n0, n1 int) {
			for n := n0; n < n1; n++ {
				row := y_NM[n*a.M : (n+1)*a.M]
				for m, bias := range a.b_M {
					row[m] += bias
				}
			}
		})
	}
	return y, nil
}

// linearOperands are Linear's checked operands: x [N, K] flattened, the bias or nil, and y's shape.
type linearOperands struct {
	x_NK     []float32
	b_M      []float32
	N, M, K  int
	outShape core.Shape
}

// linearArgs checks x [..., K] and b [M] against a w of shape ws [M, K].
func linearArgs(op string, x *core.Tensor, ws core.Shape, b *core.Tensor) (linearOperands, error) {
	var a linearOperands
	var err error
	if a.x_NK, err = floats(op, "x", x); err != nil {
		return a, err
	}
	xs := x.Shape()
	if len(xs) < 1 || len(ws) != 2 {
		return a, shapeError(op, "want x [..., K] and w [M, K], got x %v and w %v", xs, ws)
	}
	a.M, a.K = ws[0], ws[1]
	if xs[len(xs)-1] != a.K || a.K == 0 || a.M == 0 {
		return a, shapeError(op, "x %v and w %v: want x [..., K] and w [M, K] with K, M >= 1", xs, ws)
	}
	if b != nil {
		if a.b_M, err = floats(op, "b", b); err != nil {
			return a, err
		}
		if !b.Shape().Equal(core.Shape{a.M}) {
			return a, shapeError(op, "b %v, want [%d] for w %v", b.Shape(), a.M, ws)
		}
	}
	a.N = len(a.x_NK) / a.K
	a.outShape = append(xs[:len(xs)-1:len(xs)-1], a.M) // full slice expression: append copies, xs is untouched
	return a, nil
}

// Tile sizes of gemmNT. A tile pairs gemmTileA rows of a with gemmTileB rows of b; a tile of b rows (48 rows
// of K = 1024 floats is 192 KiB) stays in L2 while the tile's a rows stream past it. gemmTileB is a multiple
// of 3 and gemmTileA of 2, the micro-kernel's block.
const (
	gemmTileA = 64
	gemmTileB = 48
)

// gemmNT computes c[i*ldc + j] = dot(a row i, b row j) for a [n, K] and b [m, K] (both row-major, so both
// operands of every dot product are contiguous: the "NT" of BLAS). c rows may be longer than m (ldc >= m),
// which lets Conv2d write a chunk of output columns in place. It runs the packed SIMD path (gemm.go) when
// the backend has a micro-kernel, and the reference gemmNTRef otherwise.
func (be *Backend) gemmNT(a []float32, n int, b []float32, m, K int, c []float32, ldc int) {
	if be.kernel != nil {
		be.gemmPacked(be.kernel, true, a, K, n, bRows{f: b, ld: K}, m, K, c, ldc, nil)
		return
	}
	be.gemmNTRef(a, n, b, m, K, c, ldc)
}

// gemmNTRef is the reference gemmNT: each dot product is one float32 accumulator over k in increasing
// order. Work is split over tiles of the output, in parallel.
func (be *Backend) gemmNTRef(a []float32, n int, b []float32, m, K int, c []float32, ldc int) {
	tilesA := (n + gemmTileA - 1) / gemmTileA
	tilesB := (m + gemmTileB - 1) / gemmTileB
	// Consecutive tile indices share a tile of b, so each goroutine keeps reusing the b rows in its cache.
	be.parallelFor(tilesA*tilesB, func(t0, t1 int) {
		for t := t0; t < t1; t++ {
			ta, tb := t%tilesA, t/tilesA
			i0, j0 := ta*gemmTileA, tb*gemmTileB
			gemmTile(a, b, c, K, ldc, i0, min(i0+gemmTileA, n), j0, min(j0+gemmTileB, m))
		}
	})
}

// gemmTile computes the output block rows [i0, i1) x columns [j0, j1) of gemmNT with a 2x3 register block:
// two rows of a against three rows of b, six independent accumulators. (Measured with Go 1.26 on amd64:
// larger blocks make the compiler spill accumulators to the stack and run slower, and a single accumulator
// is bound by the latency of the float add.)
func gemmTile(a, b, c []float32, K, ldc, i0, i1, j0, j1 int) {
	row := func(s []float32, i int) []float32 { return s[i*K : (i+1)*K] }
	i := i0
	for ; i+2 <= i1; i += 2 {
		a0, a1 := row(a, i), row(a, i+1)
		c0, c1 := c[i*ldc:], c[(i+1)*ldc:]
		j := j0
		for ; j+3 <= j1; j += 3 {
			c0[j], c0[j+1], c0[j+2], c1[j], c1[j+1], c1[j+2] = dot2x3(a0, a1, row(b, j), row(b, j+1), row(b, j+2))
		}
		for ; j < j1; j++ {
			bj := row(b, j)
			c0[j], c1[j] = dot(a0, bj), dot(a1, bj)
		}
	}
	if i < i1 { // odd row count: the last row alone
		a0 := row(a, i)
		c0 := c[i*ldc:]
		j := j0
		for ; j+3 <= j1; j += 3 {
			c0[j], c0[j+1], c0[j+2] = dot1x3(a0, row(b, j), row(b, j+1), row(b, j+2))
		}
		for ; j < j1; j++ {
			c0[j] = dot(a0, row(b, j))
		}
	}
}

// dot is the float32 dot product of two equally long vectors, accumulated in increasing index order.
func dot(x, y []float32) float32 {
	y = y[:len(x)] // lets the compiler drop the bounds checks below
	var s float32
	for k, xk := range x {
		s += xk * y[k]
	}
	return s
}

// dot2x3 returns the six dot products of rows x0, x1 with rows y0, y1, y2 (all of the same length), each
// accumulated exactly like dot.
func dot2x3(x0, x1, y0, y1, y2 []float32) (s00, s01, s02, s10, s11, s12 float32) {
	x1 = x1[:len(x0)]
	y0, y1, y2 = y0[:len(x0)], y1[:len(x0)], y2[:len(x0)]
	for k, u := range x0 {
		v := x1[k]
		p, q, r := y0[k], y1[k], y2[k]
		s00 += u * p
		s01 += u * q
		s02 += u * r
		s10 += v * p
		s11 += v * q
		s12 += v * r
	}
	return
}

// dot1x3 returns the dot products of x with y0, y1, y2, each accumulated exactly like dot.
func dot1x3(x, y0, y1, y2 []float32) (s0, s1, s2 float32) {
	y0, y1, y2 = y0[:len(x)], y1[:len(x)], y2[:len(x)]
	for k, u := range x {
		s0 += u * y0[k]
		s1 += u * y1[k]
		s2 += u * y2[k]
	}
	return
}
