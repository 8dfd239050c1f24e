package cpu

import (
	"math"
	"testing"

	"github.com/webvar/webvar/core"
)

// TestFastMath: New's float32 GELU and SiLU agree with the float64 reference within a few float32 ulps of
// the result (plus a tiny absolute slack, see below) over a dense range of
// inputs, and give the reference's values at the extremes (infinities, NaN, huge magnitudes).
func TestFastMath(t *testing.T) {
	fast, ref := New(1), NewReference(1)
	var xs []float32
	for x := float32(-30); x <= 30; x += 1.0 / 256 {
		xs = append(xs, x)
	}
	inf := float32(math.Inf(1))
	xs = append(xs, 1e-30, -1e-30, 0, 1e4, -1e4, 3e38, -3e38, inf, -inf, float32(math.NaN()))
	for _, op := range []struct {
		name string
		f    func(b *Backend, x *core.Tensor) (*core.Tensor, error)
	}{{"gelu", (*Backend).GELUTanh}, {"silu", (*Backend).SiLU}} {
		x := upload(t, fast, core.Shape{len(xs)}, xs)
		got := download(t, fast, must(t)(op.f(fast, x)), core.Shape{len(xs)})
		want := download(t, ref, must(t)(op.f(ref, upload(t, ref, core.Shape{len(xs)}, xs))), core.Shape{len(xs)})
		for i := range xs {
			g, w := float64(got[i]), float64(want[i])
			if math.IsNaN(w) || math.IsInf(w, 0) {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(math.IsNaN(g) && math.IsNaN(w)) {
					t.Fatalf("%s(%v) = %v, want %v", op.name, xs[i], g, w)
				}
				continue
			}
			// In the negative tails the result is x*exp(-arg): the float32 rounding of arg (|arg| = 2|u| for
			// GELU, |x| for SiLU) scales the relative error by 1 + |arg|, as in any float32 evaluation. The
			// absolute slack covers GELU's far tail, where the float64 reference itself cancels to 0 and the
			// true value (which the fast form keeps) is below 1e-15*|x|.
			x := float64(xs[i])
			arg := math.Abs(x)
			if op.name == "gelu" {
				arg = 2 * math.Abs(0.7978845608028654*(x+0.044715*x*x*x))
			}
			if d := math.Abs(g - w); d > 4*0x1p-24*(1+arg)*math.Abs(w)+1e-15*max(1, math.Abs(x)) {
				t.Fatalf("%s(%v) = %v, want %v (error %.3g relative)", op.name, xs[i], g, w, d/math.Abs(w))
			}
		}
	}
}

// TestGroupNormFast: New's GroupNorm (with and without the fused SiLU) agrees with the reference on
// activations with a mean offset, within float32 rounding of the folded scale and shift, also where the
// mean is large next to the spread (mean 1000, std 0.5: folding the mean into the shift instead of
// subtracting it first loses about 11 bits there).
func TestGroupNormFast(t *testing.T) {
	fast, ref := New(2), NewReference(2)
	r := newRand(12)
	const B, C, H, W, G = 2, 8, 5, 7, 4
	for _, ms := range [][2]float32{{2, 3}, {1000, 0.5}, {-3e4, 2}} {
		xv := randn(r, B*C*H*W)
		for i := range xv {
			xv[i] = ms[1]*xv[i] + ms[0]
		}
		wv, bv := randn(r, C), randn(r, C)
		for _, silu := range []bool{false, true} {
			run := func(be *Backend) []float32 {
				x := upload(t, be, core.Shape{B, C, H, W}, xv)
				w, b := upload(t, be, core.Shape{C}, wv), upload(t, be, core.Shape{C}, bv)
				return download(t, be, must(t)(be.GroupNorm(x, G, w, b, 1e-6, silu)), core.Shape{B, C, H, W})
			}
			got, want := run(fast), run(ref)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-6*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("mean %v std %v silu %v: y[%d] = %v, reference %v", ms[0], ms[1], silu, i, got[i], want[i])
				}
			}
		}
	}
}

// TestSiLUAffineSIMD: the SIMD loop of groupNormFast gives siLUFast((v-mean)*scale + shift) for every
// value it writes (the same operations in the same order: bit for bit unless the Go compiler fuses a
// multiply-add of the scalar code, hence the few-ulp slack), covers the whole 8-value blocks and nothing
// past them.
func TestSiLUAffineSIMD(t *testing.T) {
	if fastSiLUAffine == nil {
		t.Skip("no SIMD loop on this platform")
	}
	var xs []float32
	for x := float32(-120); x <= 120; x += 1.0 / 64 {
		xs = append(xs, x)
	}
	inf := float32(math.Inf(1))
	xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, -103.97, -104, -104.01, 87.5, -87.5,
		1e4, -1e4, 3e38, -3e38, inf, -inf, float32(math.NaN()), 1, 2, 3) // 3 values past the last block
	const guard = 5
	sentinel := float32(math.Float32frombits(0x7fc00bad))
	r := newRand(13)
	for _, ss := range [][3]float32{{0, 1, 0}, {0, 0.37, -1.5}, {1000, 0.01, 3},
		{float32(r.NormFloat64()), float32(r.NormFloat64()), float32(r.NormFloat64())}} {
		out := make([]float32, len(xs)+guard)
		for i := range out {
			out[i] = sentinel
		}
		done := fastSiLUAffine(xs, out[:len(xs)], ss[0], ss[1], ss[2])
		if done != len(xs)/8*8 {
			t.Fatalf("wrote %d values of %d, want the whole blocks", done, len(xs))
		}
		for i, g := range out {
			if i >= done {
				if math.Float32bits(g) != math.Float32bits(sentinel) {
					t.Fatalf("wrote out[%d] = %v past the %d values it reported", i, g, done)
				}
				continue
			}
			w := siLUFast((xs[i]-ss[0])*ss[1] + ss[2])
			if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
				if !(math.IsNaN(float64(g)) && math.IsNaN(float64(w))) && g != w {
					t.Fatalf("mean %v scale %v shift %v: silu(%v) = %v, want %v", ss[0], ss[1], ss[2], xs[i], g, w)
				}
				continue
			}
			if d := math.Abs(float64(g - w)); d > 4*0x1p-24*math.Abs(float64(w))+1e-40 {
				t.Fatalf("mean %v scale %v shift %v: silu(%v) = %v, want %v", ss[0], ss[1], ss[2], xs[i], g, w)
			}
		}
	}
}

// BenchmarkGroupNormSiLU is New's GroupNorm with SiLU on the decoder's largest activation (160 channels,
// 256x256, 32 groups); the GB/s count one read and one write of x.
func BenchmarkGroupNormSiLU(b *testing.B) {
	const C, H, W = 160, 256, 256
	be := New(0)
	r := newRand(14)
	x, _ := randTensor(b, be, r, 1, C, H, W)
	w, _ := randTensor(b, be, r, C)
	bias, _ := randTensor(b, be, r, C)
	for b.Loop() {
		if _, err := be.GroupNorm(x, 32, w, bias, 1e-6, true); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*4*C*H*W*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

// TestMeanVarFast: the four-accumulator statistics agree with meanVar's within float64 rounding, on
// lengths around multiples of four and values with a large mean.
func TestMeanVarFast(t *testing.T) {
	r := newRand(15)
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 1001, 4096} {
		x := randn(r, n)
		for i := range x {
			x[i] = 5*x[i] + 100
		}
		m, v := meanVar(x)
		fm, fv := meanVarFast(x)
		if math.Abs(fm-m) > 1e-12*math.Abs(m) || math.Abs(fv-v) > 1e-10*v+1e-12 {
			t.Fatalf("n %d: meanVarFast = %v, %v; meanVar %v, %v", n, fm, fv, m, v)
		}
	}
}
