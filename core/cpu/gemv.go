package cpu

import "github.com/webvar/webvar/core"

// The matrix-vector path of Linear: y[N, M] = x[N, K] @ w[M, K]^T for few rows of x (N <= gemvMaxRows,
// batch-1 decoding), where the packed product (gemm.go) would spend most of its time packing w into
// panels for a 6-row kernel with 1 row of work. Each output m is the dot product of x's rows with w's
// row m, which is contiguous in memory: every row of w (float32, or int8/int4 codes dequantized in
// registers) is read once, for all N rows of x, straight from where it lives. New takes this path where
// it has the AVX2 kernels (gemv_amd64.go); a float product is then bound by the memory bandwidth of
// streaming w, as a batch-1 product must be, and a quantized one (4-8x fewer bytes) by the dequantizing
// arithmetic, near the bandwidth.
//
// Spec of each output (gemvRowsGo; the AVX2 kernels compute the same sums with fused multiply-adds, so
// they round less often and may differ from it in the last bits):
//   - main part, k < kMain = K rounded down to a multiple of gemvBlock: 16 float32 partial sums, lane j
//     summing x[n, k]*w[m, k] over the k with k%16 == j in increasing k;
//   - the lanes reduced pairwise in a fixed tree: s[i] = l[i]+l[i+8] (i < 8), t[i] = s[i]+s[i+4] (i < 4),
//     u0 = t[0]+t[2], u1 = t[1]+t[3], sum = u0+u1;
//   - the tail, kMain <= k < K, added to sum one product at a time in increasing k (gemvTail, plain Go
//     on every platform).
//
// A quantized w takes the same path with w[m, k] = float32(code)*scale rounded to float32 (exactly
// core.QuantHost.DequantizeRow's value) in place of the float weight, so Linear on a quantized w still
// equals Linear on q.Dequantize() bit for bit.
const (
	// gemvMaxRows is the most rows of x that take the matrix-vector path, for float and quantized w alike
	// (so that Linear on a quantized w stays bit for bit Linear on q.Dequantize()). Measured with
	// BenchmarkLinearGEMV on an AMD EPYC (2 threads, 32 KiB L1), weights far over the caches: with a
	// float w, 1 and 2 rows run up to 2x faster than the packed product, 3 or 4 rows slower (24 KiB of x
	// for K = 1536 no longer stays in L1 beside the stream of w); with a quantized w even 4 rows run 2-3x
	// faster (the packed product dequantizes w on every call), but the float case sets the limit.
	gemvMaxRows = 2
	// gemvKernelRows is the most rows of x the kernels take (the AVX2 ones hold four rows' sums in
	// registers); they are tested up to it.
	gemvKernelRows = 4
	// gemvBlock is the k step of the main part: one quantization block (core.QuantBlock), so that the
	// quantized kernels use one scale per step; the f32 kernel uses the same step to sum in the same order.
	gemvBlock = core.QuantBlock
)

// gemvKernels computes the main part (k < kMain) of the matrix-vector product for rows [m0, m1) of w:
// y[n*ldy + m-m0] = the reduced sum over k < kMain of x[n*K + k]*w[m, k], for n < N <= gemvKernelRows.
// quant serves int8 and int4 weights.
type gemvKernels struct {
	f32   func(x []float32, N, K, kMain int, w []float32, m0, m1 int, y []float32, ldy int)
	quant func(x []float32, N, K, kMain int, q core.QuantHost, m0, m1 int, y []float32, ldy int)
}

// gemvGo is the matrix-vector path in plain Go: the specification of the assembly kernels, run by the
// tests on every platform. New does not use it where there is no assembly: there Linear already runs
// without packing (gemmTile, gemmNTQuant), and measured faster than gemvGo (BenchmarkLinearGEMV with
// -tags purego: 1 row 1.1-2.5x, 2 rows 2-5x).
var gemvGo = &gemvKernels{f32: gemvRowsGo, quant: gemvQuantGo}

// gemv is Linear's matrix-vector path: y_NM = x_NK @ w^T for w_MK (float) or q (quant true), N <=
// gemvMaxRows, parallel over ranges of output columns m.
func (be *Backend) gemv(x_NK []float32, N, K int, w_MK []float32, q core.QuantHost, quant bool, M int, y_NM []float32) {
	g := be.gemvPath
	kMain := K / gemvBlock * gemvBlock
	be.parallelFor(M, func(m0, m1 int) {
		y := y_NM[m0:]
		if quant {
			g.quant(x_NK, N, K, kMain, q, m0, m1, y, M)
		} else {
			g.f32(x_NK, N, K, kMain, w_MK, m0, m1, y, M)
		}
		if kMain == K {
			return
		}
		var wt [gemvBlock]float32 // row m's tail, dequantized
		for m := m0; m < m1; m++ {
			tail := wt[:K-kMain]
			if quant {
				q.DequantizeRange(m, kMain, K, tail)
			} else {
				tail = w_MK[m*K+kMain : (m+1)*K]
			}
			for n := range N {
				y[n*M+m-m0] = gemvTail(y[n*M+m-m0], x_NK[n*K+kMain:(n+1)*K], tail)
			}
		}
	})
}

// gemvTail adds the tail products x[k]*w[k] to sum one at a time in increasing k.
func gemvTail(sum float32, x, w []float32) float32 {
	w = w[:len(x)]
	for k, xk := range x {
		sum += float32(xk * w[k])
	}
	return sum
}

// gemvRowsGo is gemvKernels.f32 in plain Go, the specification of the main part.
func gemvRowsGo(x []float32, N, K, kMain int, w []float32, m0, m1 int, y []float32, ldy int) {
	for m := m0; m < m1; m++ {
		wm := w[m*K : m*K+kMain]
		for n := range N {
			y[n*ldy+m-m0] = gemvDotGo(x[n*K:n*K+kMain], wm)
		}
	}
}

// gemvDotGo is the main-part sum of one output: 16 lanes (k%16), reduced as the spec says. len(x) is a
// multiple of 16.
func gemvDotGo(x, w []float32) float32 {
	var l [16]float32
	w = w[:len(x)]
	for k := 0; k+16 <= len(x); k += 16 {
		xs, ws := x[k:k+16], w[k:k+16]
		for j := range l {
			l[j] += float32(xs[j] * ws[j])
		}
	}
	var s [8]float32
	for i := range s {
		s[i] = l[i] + l[i+8]
	}
	t0, t1, t2, t3 := s[0]+s[4], s[1]+s[5], s[2]+s[6], s[3]+s[7]
	return (t0 + t2) + (t1 + t3)
}

// gemvQuantGo is gemvKernels.quant in plain Go: each row of w is dequantized (DequantizeRange, the exact
// values of q.Dequantize()) into a scratch row, then summed as gemvRowsGo sums a float row.
func gemvQuantGo(x []float32, N, K, kMain int, q core.QuantHost, m0, m1 int, y []float32, ldy int) {
	buf := bScratch.get(kMain)
	defer bScratch.put(buf)
	wm := *buf
	for m := m0; m < m1; m++ {
		q.DequantizeRange(m, 0, kMain, wm)
		for n := range N {
			y[n*ldy+m-m0] = gemvDotGo(x[n*K:n*K+kMain], wm)
		}
	}
}
