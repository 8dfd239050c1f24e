package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/webvar/webvar/core"
)

// gemvVariants are the matrix-vector paths of this machine: the plain-Go spec everywhere, and the AVX2
// kernels where New uses them.
func gemvVariants() map[string]*gemvKernels {
	v := map[string]*gemvKernels{"go": gemvGo}
	if fastGemv != nil {
		v["simd"] = fastGemv
	}
	return v
}

// gemvShapes straddle the kernels' remainders: K around multiples of 8, 16 and 32 (the tail is plain
// Go, the main part whole 32-blocks; K < 32 is all tail), M odd and not a multiple of anything, N 1..4;
// K = 1000 and 2100 are cut into k chunks on amd64 (from 3 and 1 rows of x on), with a ragged last chunk,
// and M = 101 has more rows than a chunk pass in every task.
var gemvShapes = func() (s []struct{ N, M, K int }) {
	for _, K := range []int{1, 7, 16, 31, 32, 33, 48, 64, 95, 100, 257, 1000, 2100} {
		Ms := []int{1, 5, 19}
		if K >= 1000 {
			Ms = append(Ms, 101)
		}
		for _, M := range Ms {
			for N := 1; N <= gemvKernelRows; N++ {
				s = append(s, struct{ N, M, K int }{N, M, K})
			}
		}
	}
	return s
}()

// gemvClose reports whether got is within float32 rounding of a K-long sum of the float64 want: 1e-5 of
// the sum of the magnitudes of its terms, sumAbs (a dropped or repeated term of a K <= 1000 sum is ~1e-3
// of it).
func gemvClose(got float32, want, sumAbs float64) bool {
	return math.Abs(float64(got)-want) <= 1e-5*sumAbs
}

// sumAbs returns, per output of x @ w^T + b, the sum of the magnitudes of the terms.
func sumAbs(x, w, b []float32, N, M, K int) []float64 {
	ax, aw := make([]float32, len(x)), make([]float32, len(w))
	for i, v := range x {
		ax[i] = float32(math.Abs(float64(v)))
	}
	for i, v := range w {
		aw[i] = float32(math.Abs(float64(v)))
	}
	var ab []float32
	if b != nil {
		ab = make([]float32, len(b))
		for i, v := range b {
			ab[i] = float32(math.Abs(float64(v)))
		}
	}
	s := refLinear(ax, aw, ab, N, M, K)
	for i := range s {
		s[i] += math.SmallestNonzeroFloat32
	}
	return s
}

// TestGEMVKernels: each matrix-vector kernel writes exactly the outputs of its rows [m0, m1),
// y[n*ldy + m-m0] with ldy longer than the row, leaving the gaps and a guard untouched, and its main part
// agrees with a float64 product over k < kMain; the quantized kernels compute, bit for bit, what the same
// path computes on the dequantized rows.
func TestGEMVKernels(t *testing.T) {
	const guard = 9
	sentinel := math.Float32frombits(0x7fc00bad) // a NaN no product yields
	r := newRand(91)
	for _, c := range gemvShapes {
		x, w := randn(r, c.N*c.K), randn(r, c.M*c.K)
		kMain := c.K / gemvBlock * gemvBlock
		m0, m1 := c.M/3, c.M // a sub-range of rows, as a parallelFor task gets
		cols, ldy := m1-m0, m1-m0+3
		// The main part in float64, on x and w cut to kMain columns.
		cut := func(v []float32, rows int) []float32 {
			o := make([]float32, 0, rows*kMain)
			for i := range rows {
				o = append(o, v[i*c.K:i*c.K+kMain]...)
			}
			return o
		}
		want := refLinear(cut(x, c.N), cut(w, c.M), nil, c.N, c.M, kMain)
		mag := sumAbs(cut(x, c.N), cut(w, c.M), nil, c.N, c.M, kMain)
		check := func(t *testing.T, y []float32) {
			t.Helper()
			for i, v := range y {
				n, col := i/ldy, i%ldy
				if n < c.N && col < cols {
					if o := n*c.M + m0 + col; !gemvClose(v, want[o], mag[o]) {
						t.Fatalf("y[%d, %d] = %v, want %v", n, m0+col, v, want[o])
					}
				} else if math.Float32bits(v) != math.Float32bits(sentinel) {
					t.Fatalf("wrote %v at offset %d (row %d, column %d), outside the %dx%d output", v, i, n, col, c.N, cols)
				}
			}
		}
		newY := func() []float32 {
			y := make([]float32, (c.N-1)*ldy+cols+guard)
			for i := range y {
				y[i] = sentinel
			}
			return y
		}
		for name, g := range gemvVariants() {
			t.Run(fmt.Sprintf("%s/N%d_M%d_K%d", name, c.N, c.M, c.K), func(t *testing.T) {
				y := newY()
				g.f32(x, c.N, c.K, kMain, w, m0, m1, y, ldy)
				check(t, y)
				for _, s := range []core.QuantScheme{core.QuantInt8, core.QuantInt4} {
					q, err := core.Quantize(core.HostTensor{Shape: core.Shape{c.M, c.K}, Data: w}, s)
					if err != nil {
						t.Fatal(err)
					}
					dq, err := q.Dequantize()
					if err != nil {
						t.Fatal(err)
					}
					yq, yd := newY(), newY()
					g.quant(x, c.N, c.K, kMain, q, m0, m1, yq, ldy)
					g.f32(x, c.N, c.K, kMain, dq.Data, m0, m1, yd, ldy)
					for i := range yq {
						if math.Float32bits(yq[i]) != math.Float32bits(yd[i]) {
							t.Fatalf("%v: y offset %d = %v, on the dequantized weight %v", s, i, yq[i], yd[i])
						}
					}
				}
			})
		}
	}
}

// TestLinearGEMV: Linear with 1..4 rows of x (as [N, K] and as [1, N, K]; up to gemvMaxRows through
// the matrix-vector path), with and without bias, on float, int8 and
// int4 weights, against a float64 product, and quantized Linear bit for bit equal to Linear on
// q.Dequantize().
func TestLinearGEMV(t *testing.T) {
	r := newRand(92)
	for name, g := range gemvVariants() {
		for _, base := range []*Backend{New(3), NewReference(3), New(1)} {
			be := *base
			be.gemvPath = g
			t.Run(fmt.Sprintf("%s/kernel%v_threads%d", name, be.kernel != nil, be.threads), func(t *testing.T) {
				for _, c := range gemvShapes {
					for _, bias := range []bool{false, true} {
						testLinearGEMVCase(t, &be, r, c.N, c.M, c.K, bias)
					}
				}
			})
		}
	}
}

func testLinearGEMVCase(t *testing.T, be *Backend, r interface{ NormFloat64() float64 }, N, M, K int, bias bool) {
	t.Helper()
	rv := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	xv, wv := rv(N*K), rv(M*K)
	xShape := core.Shape{N, K}
	if N%2 == 0 {
		xShape = core.Shape{1, N, K}
	}
	x := upload(t, be, xShape, xv)
	var bv []float32
	var b *core.Tensor
	if bias {
		bv = rv(M)
		b = upload(t, be, core.Shape{M}, bv)
	}
	outShape := append(xShape[:len(xShape)-1:len(xShape)-1], M)
	linear := func(w *core.Tensor) []float32 { return download(t, be, must(t)(be.Linear(x, w, b)), outShape) }
	want, mag := refLinear(xv, wv, bv, N, M, K), sumAbs(xv, wv, bv, N, M, K)
	got := linear(upload(t, be, core.Shape{M, K}, wv))
	for i, v := range got {
		if !gemvClose(v, want[i], mag[i]) {
			t.Fatalf("N %d, M %d, K %d, bias %v: y[%d, %d] = %v, want %v", N, M, K, bias, i/M, i%M, v, want[i])
		}
	}
	for _, s := range []core.QuantScheme{core.QuantInt8, core.QuantInt4} {
		q, err := core.Quantize(core.HostTensor{Shape: core.Shape{M, K}, Data: wv}, s)
		if err != nil {
			t.Fatal(err)
		}
		dq, err := q.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		wq, err := be.UploadQuant(q)
		if err != nil {
			t.Fatal(err)
		}
		gq, gd := linear(wq), linear(upload(t, be, core.Shape{M, K}, dq.Data))
		want, mag := refLinear(xv, dq.Data, bv, N, M, K), sumAbs(xv, dq.Data, bv, N, M, K)
		for i := range gq {
			if math.Float32bits(gq[i]) != math.Float32bits(gd[i]) {
				t.Fatalf("%v N %d, M %d, K %d: y[%d] = %v, on the dequantized weight %v", s, N, M, K, i, gq[i], gd[i])
			}
			if !gemvClose(gq[i], want[i], mag[i]) {
				t.Fatalf("%v N %d, M %d, K %d, bias %v: y[%d, %d] = %v, want %v", s, N, M, K, bias, i/M, i%M, gq[i], want[i])
			}
		}
	}
}

// TestLinearAboveGEMVUnchanged: with more rows of x than the matrix-vector path takes, Linear is bit for
// bit the product without that path, on float and quantized weights.
func TestLinearAboveGEMVUnchanged(t *testing.T) {
	r := newRand(93)
	for _, base := range []*Backend{New(3), NewReference(3)} {
		with, without := *base, *base
		with.gemvPath, without.gemvPath = gemvGo, nil
		if fastGemv != nil {
			with.gemvPath = fastGemv
		}
		for _, c := range []struct{ N, M, K int }{{gemvMaxRows + 1, 37, 100}, {gemvKernelRows + 1, 37, 100}, {7, 64, 96}, {13, 19, 33}} {
			x, _ := randTensor(t, &with, r, c.N, c.K)
			wv := randn(r, c.M*c.K)
			q, err := core.Quantize(core.HostTensor{Shape: core.Shape{c.M, c.K}, Data: wv}, core.QuantInt4)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []*core.Tensor{upload(t, &with, core.Shape{c.M, c.K}, wv), must(t)(with.UploadQuant(q))} {
				a := download(t, &with, must(t)(with.Linear(x, w, nil)), core.Shape{c.N, c.M})
				b := download(t, &without, must(t)(without.Linear(x, w, nil)), core.Shape{c.N, c.M})
				for i := range a {
					if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
						t.Fatalf("%v: y[%d] = %v, without the matrix-vector path %v", c, i, a[i], b[i])
					}
				}
			}
		}
	}
}

// TestGEMVDoesNotPrepack: a weight used only through the matrix-vector path is not prepacked (it reads
// the weight where it lives; a packed copy would only take memory).
func TestGEMVDoesNotPrepack(t *testing.T) {
	be := New(3)
	if be.packs == nil {
		t.Skip("no prepack cache on this platform")
	}
	r := newRand(95)
	wv := randn(r, 40*70)
	w := upload(t, be, core.Shape{40, 70}, wv)
	q, err := core.Quantize(core.HostTensor{Shape: core.Shape{40, 70}, Data: wv}, core.QuantInt8)
	if err != nil {
		t.Fatal(err)
	}
	wq := must(t)(be.UploadQuant(q))
	for N := 1; N <= gemvMaxRows; N++ {
		x, _ := randTensor(t, be, r, N, 70)
		must(t)(be.Linear(x, w, nil))
		must(t)(be.Linear(x, wq, nil))
	}
	if n := be.PrepackedBytes(); n != 0 {
		t.Fatalf("%d bytes prepacked by products on the matrix-vector path", n)
	}
}

// BenchmarkLinearGEMV is batch-1 (and 2, 4) Linear at the RQ-Transformer-480M's MLP shapes (width 1536),
// through the matrix-vector path (New's, and the plain-Go spec) and through the packed product without
// prepacked weights (a model over the prepack budget, as the 480M one is), or where there is no assembly
// the plain-Go gemmTile path New takes there. Weights are 28-38 MB in float32, far over the caches, so the
// ceiling is the memory bandwidth: GB/s counts the weight bytes read per second.
func BenchmarkLinearGEMV(b *testing.B) {
	r := newRand(94)
	threads := New(0).threads
	paths := map[string]*Backend{"gemv-go": {threads: threads, fastMath: true, gemvPath: gemvGo}}
	if fastGemv != nil {
		paths["gemv"] = New(0)
	}
	if fastKernel != nil {
		paths["packed"] = &Backend{threads: threads, kernel: fastKernel, wide: fastWideKernel, fastMath: true}
	} else {
		paths["gemmtile"] = &Backend{threads: threads, fastMath: true}
	}
	for _, sh := range []struct{ K, M int }{{1536, 6144}, {6144, 1536}} {
		wv := randn(r, sh.M*sh.K)
		for _, dt := range []string{"f32", "int8", "int4"} {
			for _, N := range []int{1, 2} {
				for pname, be := range paths {
					name := fmt.Sprintf("%dx%d->%d/%s/N%d/%s", N, sh.K, sh.M, dt, N, pname)
					b.Run(name, func(b *testing.B) {
						w := upload(b, be, core.Shape{sh.M, sh.K}, wv)
						bytes := 4 * sh.M * sh.K
						if dt != "f32" {
							s := core.QuantInt8
							if dt == "int4" {
								s = core.QuantInt4
							}
							q, err := core.Quantize(core.HostTensor{Shape: core.Shape{sh.M, sh.K}, Data: wv}, s)
							if err != nil {
								b.Fatal(err)
							}
							w = must(b)(be.UploadQuant(q))
							bytes = 4*len(q.Codes) + 4*len(q.Scales)
						}
						x := upload(b, be, core.Shape{N, sh.K}, randn(r, N*sh.K))
						for b.Loop() {
							y := must(b)(be.Linear(x, w, nil))
							be.Free(y)
						}
						sec := b.Elapsed().Seconds() / float64(b.N)
						b.ReportMetric(float64(bytes)/sec/1e9, "GB/s")
						b.ReportMetric(float64(2*N*sh.M*sh.K)/sec/1e9, "GFLOP/s")
					})
				}
			}
		}
	}
}
