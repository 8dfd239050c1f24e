package cpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// Quantized weights: the storage of a quantized tensor is a core.QuantHost (the packed codes and scales,
// copied at upload). Only Linear accepts such a tensor, as w; every other op rejects it like a tensor of
// another backend.

var _ core.QuantUploader = (*Backend)(nil)

// UploadQuant validates q and keeps a copy of it as the storage of a tensor of shape q.Shape (the caller
// may reuse q's slices afterwards).
func (be *Backend) UploadQuant(q core.QuantHost) (*core.Tensor, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("upload quantized: %w", err)
	}
	q.Shape = q.Shape.Clone()
	q.Codes = append([]uint32(nil), q.Codes...)
	q.Scales = append([]float32(nil), q.Scales...)
	return core.NewTensor(q.Shape, q), nil
}

// quantWeight returns w's quantized storage, if it has one (Linear's dispatch).
func quantWeight(w *core.Tensor) (core.QuantHost, bool) {
	if w == nil {
		return core.QuantHost{}, false
	}
	q, ok := w.Storage().(core.QuantHost)
	return q, ok
}

// gemmNTQuant is gemmNT for a quantized w [M, K]: y_NM = x_NK @ dequant(w)^T.
//
// Spec: y[n, m] = dot(x[n, :], dequant(w)[m, :]), where dequant(w)[m, k] = float32(code[m, k]) *
// scale[m, k/32] rounded to float32 (core.QuantHost.DequantizeRow), and the dot product is Linear's: one
// float32 accumulator in increasing k. So Linear on a quantized w is exactly Linear on q.Dequantize().
//
// The rows of w are dequantized one tile of gemmTileB rows at a time (per goroutine) into a scratch
// buffer that gemmTile then uses as its b operand, with the same tile boundaries as gemmNT: every output
// goes through the same dot routine as in float Linear (bit-identical even where the compiler fuses
// multiply-adds), and the full float weight is never materialized.
//
// With a micro-kernel (gemm.go) the packed path dequantizes w while packing its panels, and its outputs
// equal the packed path's on q.Dequantize() bit for bit, for the same reason.
func (be *Backend) gemmNTQuant(x_NK []float32, N int, q core.QuantHost, y_NM []float32) {
	M, K := q.Shape[0], q.Shape[1]
	if be.kernel != nil {
		be.gemmPacked(be.kernel, true, x_NK, K, N, bQuantRows{q: q}, M, K, y_NM, M, nil)
		return
	}
	tilesW := (M + gemmTileB - 1) / gemmTileB
	be.parallelFor(tilesW, func(t0, t1 int) {
		wTile := make([]float32, gemmTileB*K) // dequantized rows m0..m1-1 of w, row-major
		for t := t0; t < t1; t++ {
			m0, m1 := t*gemmTileB, min((t+1)*gemmTileB, M)
			for m := m0; m < m1; m++ {
				q.DequantizeRow(m, wTile[(m-m0)*K:(m-m0+1)*K])
			}
			// Output columns m0..m1-1 are columns 0..m1-m0 of y_NM[m0:] with row stride M.
			for n0 := 0; n0 < N; n0 += gemmTileA {
				gemmTile(x_NK, wTile, y_NM[m0:], K, M, n0, min(n0+gemmTileA, N), 0, m1-m0)
			}
		}
	})
}
