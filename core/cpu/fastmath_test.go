package cpu

import (
	"math"
	"testing"

	"github.com/webvar/webvar/core"
)

// TestFastMath: New's float32 GELUs and SiLU agree with the float64 reference within a few float32 ulps of
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
	}{{"gelu", (*Backend).GELUTanh}, {"gelu-erf", (*Backend).GELU}, {"silu", (*Backend).SiLU}} {
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
			// In the negative tails the result is x*exp(-arg) (times a slowly varying factor for the exact
			// GELU): the float32 rounding of arg (|arg| = 2|u| for the tanh GELU, x^2/2 for the exact one, |x|
			// for SiLU) scales the relative error by 1 + |arg|, as in any float32 evaluation. The absolute
			// slack covers the GELUs' far tails, where the float64 reference itself cancels to 0 (or loses its
			// relative accuracy) and the true value (which the fast form keeps) is below 1e-15*|x|.
			// The exact GELU's 1 + erf(z) also carries the float32 erf's absolute error (TestErfFast) into
			// the result, 0.5*|x| times it, which matters where 1 + erf is small but not yet a tail (z
			// near -0.87, 1 + erf = 0.22: 8 ulps of the result).
			x := float64(xs[i])
			arg, slack := math.Abs(x), 1e-15*max(1, math.Abs(x))
			switch op.name {
			case "gelu":
				arg = 2 * math.Abs(0.7978845608028654*(x+0.044715*x*x*x))
			case "gelu-erf":
				arg = x * x / 2
				slack += 0.5 * math.Abs(x) * 1.5e-7
			}
			if d := math.Abs(g - w); d > 4*0x1p-24*(1+arg)*math.Abs(w)+slack {
				t.Fatalf("%s(%v) = %v, want %v (error %.3g relative)", op.name, xs[i], g, w, d/math.Abs(w))
			}
		}
	}
}

// TestErfFast measures the float32 erf of the exact GELU's fast path (erfSmall below erfSplit, 1 -
// erfcLarge from there on) against math.Erf at every 2^-12 of [-10, 10] and at the float32 values just
// around the split. Measured (amd64, Go 1.26): at most 9.6e-8 absolute on erf (at z = 0.8749999, just
// inside the small piece; under two ulps of the result), and for erfcLarge against math.Erfc a relative
// 2.3e-7 beyond the a^2*2^-24 that exp makes of the rounding of a^2 (4.1e-6 in all at a = 8.4; past
// a = 9.1 erfc is a float32 subnormal). The bounds leave room for other platforms' rounding (FMA
// contraction on arm64).
func TestErfFast(t *testing.T) {
	erf := func(z float32) float32 {
		if z > -erfSplit && z < erfSplit {
			return erfSmall(z)
		}
		if z > 0 {
			return 1 - erfcLarge(z)
		}
		return erfcLarge(-z) - 1
	}
	var zs []float32
	for z := -10.0; z <= 10; z += 1.0 / 4096 {
		zs = append(zs, float32(z))
	}
	for _, z := range []float32{erfSplit, -erfSplit} {
		for i, v := 0, z; i < 64; i, v = i+1, math.Nextafter32(v, 0) {
			zs = append(zs, v, -v+2*z) // just inside and just outside the small piece
		}
	}
	var maxAbs, maxRel float64
	var atAbs, atRel float32
	for _, z := range zs {
		if d := math.Abs(float64(erf(z)) - math.Erf(float64(z))); d > maxAbs {
			maxAbs, atAbs = d, z
		}
		if a := float64(z); a >= erfSplit && a <= 9 { // beyond 9.1 erfc is subnormal in float32
			want := math.Erfc(a)
			d := math.Abs(float64(erfcLarge(z))-want) / want
			if d > 4e-7+1.5*a*a*0x1p-24 {
				t.Errorf("erfcLarge(%v) = %v, want %v (relative error %.3g)", z, erfcLarge(z), want, d)
			}
			if d > maxRel {
				maxRel, atRel = d, z
			}
		}
	}
	t.Logf("float32 erf: max abs error %.3g at %v; erfcLarge: max relative error %.3g at %v", maxAbs, atAbs, maxRel, atRel)
	if maxAbs > 1.5e-7 {
		t.Errorf("float32 erf: max abs error %.3g at %v, want <= 1.5e-7", maxAbs, atAbs)
	}
	if erfcLarge(float32(math.Inf(1))) != 0 || erfcLarge(12) != 0 {
		t.Errorf("erfcLarge(+Inf) = %v, erfcLarge(12) = %v, want 0 (exp underflows)", erfcLarge(float32(math.Inf(1))), erfcLarge(12))
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

// simdInputs are the values the SIMD loops are checked on: a fine grid over the range where the
// functions change, the special values, and 3 values past the last whole block.
func simdInputs() []float32 {
	var xs []float32
	for x := float32(-120); x <= 120; x += 1.0 / 64 {
		xs = append(xs, x)
	}
	inf := float32(math.Inf(1))
	return append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, -103.97, -104, -104.01, 87.5, -87.5,
		1e4, -1e4, 3e38, -3e38, inf, -inf, float32(math.NaN()), 1, 2, 3)
}

// checkSIMD runs a SIMD loop on xs and checks that it wrote the whole 8-value blocks and nothing past them,
// each value equal to want's (NaN for NaN) within ulps float32 ulps.
func checkSIMD(t *testing.T, name string, xs []float32, simd func(in, out []float32) int, want func(float32) float32, ulps float64) {
	t.Helper()
	const guard = 5
	sentinel := math.Float32frombits(0x7fc00bad)
	out := make([]float32, len(xs)+guard)
	for i := range out {
		out[i] = sentinel
	}
	done := simd(xs, out[:len(xs)])
	if done != len(xs)/8*8 {
		t.Fatalf("%s wrote %d values of %d, want the whole blocks", name, done, len(xs))
	}
	for i, g := range out {
		if i >= done {
			if math.Float32bits(g) != math.Float32bits(sentinel) {
				t.Fatalf("%s wrote out[%d] = %v past the %d values it reported", name, i, g, done)
			}
			continue
		}
		w := want(xs[i])
		if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
			if !(math.IsNaN(float64(g)) && math.IsNaN(float64(w))) && g != w {
				t.Fatalf("%s(%v) = %v, want %v", name, xs[i], g, w)
			}
			continue
		}
		if d := math.Abs(float64(g - w)); d > ulps*0x1p-24*math.Abs(float64(w))+1e-40 {
			t.Fatalf("%s(%v) = %v, want %v", name, xs[i], g, w)
		}
	}
}

// TestGELUSIMD: the SIMD GELU (tanh) gives geluFast's values bit for bit (the same operations in the same
// order; a build that lets the Go compiler fuse multiply-adds, GOAMD64=v3, may need a few ulps of slack).
func TestGELUSIMD(t *testing.T) {
	if fastGELU == nil {
		t.Skip("no SIMD loop on this platform")
	}
	checkSIMD(t, "gelu", simdInputs(), fastGELU, geluFast, 0)
}

// TestExpShiftSIMD: the SIMD exponentials of softmaxFast give expf(x - shift) bit for bit, in place too.
func TestExpShiftSIMD(t *testing.T) {
	if fastExpShift == nil {
		t.Skip("no SIMD loop on this platform")
	}
	for _, shift := range []float32{0, 120, 3e38, -5.25} {
		var xs []float32 // expf's domain: x - shift <= 0 (softmax's scores minus their maximum), and NaN
		for _, x := range simdInputs() {
			if !(x-shift > 0) {
				xs = append(xs, x)
			}
		}
		checkSIMD(t, "exp", xs, func(in, out []float32) int { return fastExpShift(in, out, shift) },
			func(x float32) float32 { return expf(x - shift) }, 0)
	}
	row := append([]float32(nil), simdInputs()[:64]...)
	want := make([]float32, len(row))
	for i, x := range row {
		want[i] = expf(x - 1)
	}
	if n := fastExpShift(row, row, 1); n != 64 {
		t.Fatalf("in place: wrote %d values, want 64", n)
	}
	for i := range row {
		if math.Abs(float64(row[i]-want[i])) > 4*0x1p-24*math.Abs(float64(want[i])) {
			t.Fatalf("in place: exp(x - 1) at %d = %v, want %v", i, row[i], want[i])
		}
	}
}

// TestSiLUSIMD: the fast backend's SiLU (the SIMD loop over whole 8-value blocks, siLUFast for the rest)
// gives siLUFast bit for bit on every value, the sign of zero included.
func TestSiLUSIMD(t *testing.T) {
	be := New(2)
	var xs []float32
	for x := float32(-120); x <= 120; x += 0.37 {
		xs = append(xs, x)
	}
	negZero := float32(math.Copysign(0, -1))
	xs = append(xs, 0, negZero, 1e-30, -1e-30, 1e-45, -1e-45, 3e38, -3e38, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), negZero, 0) // a length that is not a multiple of 8 too
	got := download(t, be, must(t)(be.SiLU(upload(t, be, core.Shape{len(xs)}, xs))), core.Shape{len(xs)})
	for i, x := range xs {
		want := siLUFast(x)
		if math.Float32bits(got[i]) != math.Float32bits(want) && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want))) {
			t.Fatalf("silu(%v) = %v (bits %#x), siLUFast %v (bits %#x)", x, got[i], math.Float32bits(got[i]), want, math.Float32bits(want))
		}
	}
}

// TestGELUErfSIMD: the fast backend's exact GELU (the SIMD loop over whole 8-value blocks, geluErfFast
// for the rest) gives geluErfFast bit for bit on every value: both pieces of erf, their seam, the tails
// down to subnormal and zero results, and the special values.
func TestGELUErfSIMD(t *testing.T) {
	be := New(2)
	var xs []float32
	for x := float32(-16); x <= 16; x += 1.0 / 512 {
		xs = append(xs, x)
	}
	seam := float32(erfSplit / 0.70710678118654752)
	for _, x := range []float32{seam, -seam} {
		for i := -8; i <= 8; i++ {
			xs = append(xs, math.Float32frombits(uint32(int32(math.Float32bits(x))+int32(i))))
		}
	}
	negZero := float32(math.Copysign(0, -1))
	xs = append(xs, 0, negZero, 1e-30, -1e-30, 1e-45, -1e-45, 13.5, -13.5, 14.1, -14.1, 1e4, -1e4, 3e38, -3e38,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	got := download(t, be, must(t)(be.GELU(upload(t, be, core.Shape{len(xs)}, xs))), core.Shape{len(xs)})
	for i, x := range xs {
		want := geluErfFast(x)
		if math.Float32bits(got[i]) != math.Float32bits(want) && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want))) {
			t.Fatalf("gelu-erf(%v) = %v (bits %#x), geluErfFast %v (bits %#x)", x, got[i], math.Float32bits(got[i]), want, math.Float32bits(want))
		}
	}
}
