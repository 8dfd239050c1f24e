//go:build amd64 && !purego

package cpu

import (
	"golang.org/x/sys/cpu"

	"github.com/webvar/webvar/core"
)

// fastGemv is Linear's matrix-vector path on this machine: the AVX2+FMA kernels (gemv_amd64.s) where the
// CPU and OS support them, nil otherwise (as in gemv_other.go).
var fastGemv = func() *gemvKernels {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return gemvAVX2
	}
	return nil
}()

var gemvAVX2 = &gemvKernels{f32: gemvRowsAVX2, quant: gemvQuantAVX2}

// gemvRowsAVX2 is gemvKernels.f32 through gemvF32AVX2: it checks the bounds the assembly relies on.
func gemvRowsAVX2(x []float32, N, K, kMain int, w []float32, m0, m1 int, y []float32, ldy int) {
	if kMain == 0 {
		gemvZero(N, m1-m0, y, ldy)
		return
	}
	_ = x[(N-1)*K+kMain-1]
	_ = w[(m1-1)*K+kMain-1]
	_ = y[(N-1)*ldy+m1-m0-1]
	if N == 1 {
		if r4 := (m1 - m0) &^ 3; r4 > 0 {
			gemv1x4F32AVX2(kMain/gemvBlock, &x[0], &w[m0*K], 4*K, r4, &y[0])
			if m0 += r4; m0 == m1 {
				return
			}
			y = y[r4:]
		}
	}
	gemvF32AVX2(kMain/gemvBlock, &x[0], 4*K, N, &w[m0*K], 4*K, m1-m0, &y[0], 4*ldy)
}

// gemvQuantAVX2 is gemvKernels.quant through gemvInt8AVX2 and gemvInt4AVX2.
func gemvQuantAVX2(x []float32, N, K, kMain int, q core.QuantHost, m0, m1 int, y []float32, ldy int) {
	if kMain == 0 {
		gemvZero(N, m1-m0, y, ldy)
		return
	}
	asm, asm1 := gemvInt8AVX2, gemv1x4Int8AVX2
	if q.Scheme == core.QuantInt4 {
		asm, asm1 = gemvInt4AVX2, gemv1x4Int4AVX2
	}
	wpr, nb := q.Scheme.WordsPerRow(K), core.QuantBlocks(K)
	wpb := wpr / nb // words per block
	_ = x[(N-1)*K+kMain-1]
	_ = q.Codes[(m1-1)*wpr+kMain/gemvBlock*wpb-1]
	_ = q.Scales[(m1-1)*nb+kMain/gemvBlock-1]
	_ = y[(N-1)*ldy+m1-m0-1]
	if N == 1 {
		if r4 := (m1 - m0) &^ 3; r4 > 0 {
			asm1(kMain/gemvBlock, &x[0], &q.Codes[m0*wpr], 4*wpr, &q.Scales[m0*nb], 4*nb, r4, &y[0])
			if m0 += r4; m0 == m1 {
				return
			}
			y = y[r4:]
		}
	}
	asm(kMain/gemvBlock, &x[0], 4*K, N, &q.Codes[m0*wpr], 4*wpr, &q.Scales[m0*nb], 4*nb, m1-m0, &y[0], 4*ldy)
}

// gemvZero sets the main part of rows x columns outputs to zero (K < gemvBlock: only a tail).
func gemvZero(N, cols int, y []float32, ldy int) {
	for n := range N {
		clear(y[n*ldy : n*ldy+cols])
	}
}

// gemvF32AVX2 computes the main part of the matrix-vector product (gemv.go) of n <= 4 rows of x (ldx
// bytes apart) with `rows` rows of a float weight (ldw bytes apart), over blocks*32 values of k, into
// y[n*ldy + r] (ldy in bytes) (gemv_amd64.s).
//
//go:noescape
func gemvF32AVX2(blocks int, x *float32, ldx, n int, w *float32, ldw, rows int, y *float32, ldy int)

// gemvInt8AVX2 is gemvF32AVX2 for int8 codes: codes at the first row's first word (rows wstride bytes
// apart), scales at its first scale (rows sstride bytes apart).
//
//go:noescape
func gemvInt8AVX2(blocks int, x *float32, ldx, n int, codes *uint32, wstride int, scales *float32, sstride, rows int, y *float32, ldy int)

// gemvInt4AVX2 is gemvInt8AVX2 for int4 codes.
//
//go:noescape
func gemvInt4AVX2(blocks int, x *float32, ldx, n int, codes *uint32, wstride int, scales *float32, sstride, rows int, y *float32, ldy int)

// gemv1x4F32AVX2 is gemvF32AVX2 for one row of x, on rows (a multiple of 4) rows of w four at a time
// (gemv_amd64.s).
//
//go:noescape
func gemv1x4F32AVX2(blocks int, x *float32, w *float32, ldw, rows int, y *float32)

// gemv1x4Int8AVX2 is gemvInt8AVX2 for one row of x, four rows of w at a time.
//
//go:noescape
func gemv1x4Int8AVX2(blocks int, x *float32, codes *uint32, wstride int, scales *float32, sstride, rows int, y *float32)

// gemv1x4Int4AVX2 is gemvInt4AVX2 for one row of x, four rows of w at a time.
//
//go:noescape
func gemv1x4Int4AVX2(blocks int, x *float32, codes *uint32, wstride int, scales *float32, sstride, rows int, y *float32)
