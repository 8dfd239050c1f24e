package cpu

// Float32 versions of the elementwise functions, used by New's backend (Backend.fastMath): the reference
// code evaluates them in float64 with math.Exp, math.Tanh and math.Erf, several times slower per element and a
// visible share of a generation on the CPU (GELU over every FFN hidden value, SiLU and GroupNorm over every
// decoder activation). Each is within a few float32 ulps of the reference (TestFastMath), as PyTorch's own
// vectorised float32 kernels are.

// geluFast is GELUTanh's function through 0.5*(1 + tanh(u)) = sigmoid(2u): x*sigmoid(2u), with the
// sigmoid from e = exp(-2|u|) <= 1 as in siLUFast, so that expf never overflows and the far negative tail
// (where 1 + tanh(u) would cancel to 0 in float32) keeps its relative accuracy.
func geluFast(x float32) float32 {
	const (
		sqrt2OverPi = 0.7978845608028654
		kappa       = 0.044715
	)
	u := sqrt2OverPi * (x + kappa*x*x*x)
	a := u
	if a < 0 {
		a = -a
	}
	e := expf(-2 * a)
	if u >= 0 {
		return x / (1 + e)
	}
	return x * e / (1 + e)
}

// geluErfFast is GELU's function 0.5*x*(1 + erf(z)), z = x/sqrt(2), with erf in float32 from erfSmall and
// erfcLarge. For z <= -erfSplit, 1 + erf(z) is erfc(-z) itself, so the negative tail keeps its relative
// accuracy instead of cancelling to 0 (as in geluFast).
func geluErfFast(x float32) float32 {
	z := x * 0.70710678118654752 // 1/sqrt(2)
	switch {
	case z > -erfSplit && z < erfSplit:
		return 0.5 * x * (1 + erfSmall(z))
	case z > 0:
		return 0.5 * x * (2 - erfcLarge(z))
	}
	return 0.5 * x * erfcLarge(-z) // also NaN -> NaN
}

// erfSplit divides the two pieces of the float32 erf: erfSmall below, erfcLarge from there on.
const erfSplit = 0.875

// erfSmall is erf(z) for |z| < erfSplit, as z * P(z^2) with P of degree 5: the Chebyshev interpolant of
// erf(sqrt(s))/sqrt(s) on s in [0, erfSplit^2] (a near-minimax fit), expanded into powers of s. The
// coefficients were computed in float64 for this code; shaders/elementwise.wgsl has the same ones.
// TestErfFast measures the float32 evaluation against math.Erf.
func erfSmall(z float32) float32 {
	s := z * z
	return z * (erfP0 + s*(erfP1+s*(erfP2+s*(erfP3+s*(erfP4+s*erfP5)))))
}

// erfSmall's coefficients.
const (
	erfP0 = 1.128379158
	erfP1 = -0.3761255451
	erfP2 = 0.112824966
	erfP3 = -0.02679294778
	erfP4 = 0.005034370664
	erfP5 = -0.0006214585368
)

// erfcLarge is erfc(a) for a >= erfSplit (and +Inf), as exp(-a^2) * t * R(t) with t = 2/(2+a) in (0,
// 2/(2+erfSplit)]: erfc(a)*exp(a^2) falls like 1/(a*sqrt(pi)), so in t it is t times a smooth function
// R, here of degree 7: the Chebyshev interpolant of erfc(a)*exp(a^2)/t in t (R(0) = 1/(2*sqrt(pi))),
// expanded into powers of t. The result keeps its relative accuracy (2.3e-7, TestErfFast) down to
// float32's subnormals (a = 9.1), except for the rounding of a^2, which exp scales by a^2: 4.1e-6 at
// a = 8.4, as the rounding of the argument z itself would cause in any float32 evaluation.
func erfcLarge(a float32) float32 {
	t := 2 / (2 + a)
	return expf(-a*a) * t * (erfR0 + t*(erfR1+t*(erfR2+t*(erfR3+t*(erfR4+t*(erfR5+t*(erfR6+t*erfR7)))))))
}

// erfcLarge's coefficients.
const (
	erfR0 = 0.2820947341
	erfR1 = 0.2821055036
	erfR2 = 0.2464953723
	erfR3 = 0.180499493
	erfR4 = 0.05749281891
	erfR5 = 0.08638957021
	erfR6 = -0.2284015991
	erfR7 = 0.0938726033
)

// siLUFast is siLU's function with the sigmoid from e = exp(-|x|): 1/(1+e) for x >= 0, e/(1+e) below, so
// that expf never overflows. Infinities and NaN behave as in siLU: +Inf -> +Inf, -Inf -> NaN, NaN -> NaN.
func siLUFast(x float32) float32 {
	a := x
	if a < 0 {
		a = -a
	}
	e := expf(-a)
	if x >= 0 {
		return x / (1 + e)
	}
	return x * e / (1 + e)
}

// groupNormFast normalises one channel of a group: out = (in - mean)*rstd*w + b, as (in - m)*s + t with
// m = float32(mean), s = rstd*w and t = b - (mean - m)*s (what m's rounding dropped of the mean) folded
// once in float64 and rounded to float32; then SiLU if silu. Subtracting m before scaling matters where
// the mean is large next to the spread: in*s + (b - mean*s) adds two large float32 terms that cancel,
// losing about log2(|mean|/std) bits (mean 1000, std 0.5: errors of 4e-4 on outputs of order 1, the
// cross-backend table's groupnorm-...-mean1000-std0.5 case), while in - m is exact for values within a
// factor of two of m (Sterbenz) and rounds relative to the small difference otherwise.
func groupNormFast(in, out []float32, mean, rstd float64, w, b float32, silu bool) {
	s := rstd * float64(w)
	m := float32(mean)
	scale, shift := float32(s), float32(float64(b)-(mean-float64(m))*s)
	out = out[:len(in)]
	if silu {
		done := 0
		if fastSiLUAffine != nil {
			done = fastSiLUAffine(in, out, m, scale, shift)
		}
		for p, v := range in[done:] {
			out[done+p] = siLUFast((v-m)*scale + shift)
		}
		return
	}
	for p, v := range in {
		out[p] = (v-m)*scale + shift
	}
}

// meanVarFast is meanVar with four float64 accumulators per pass (values i, i+1, i+2, i+3 of each group of
// four), added at the end: the same float64 sums in another order, several times faster than meanVar's one
// dependency chain per pass. GroupNorm's statistics over a decoder activation (a million values per
// group) are its largest use.
func meanVarFast(x []float32) (mean, variance float64) {
	n := len(x) / 4 * 4
	var s0, s1, s2, s3 float64
	for i := 0; i < n; i += 4 {
		v := (*[4]float32)(x[i : i+4])
		s0 += float64(v[0])
		s1 += float64(v[1])
		s2 += float64(v[2])
		s3 += float64(v[3])
	}
	for _, v := range x[n:] {
		s0 += float64(v)
	}
	mean = ((s0 + s1) + (s2 + s3)) / float64(len(x))
	var q0, q1, q2, q3 float64
	for i := 0; i < n; i += 4 {
		v := (*[4]float32)(x[i : i+4])
		d0, d1, d2, d3 := float64(v[0])-mean, float64(v[1])-mean, float64(v[2])-mean, float64(v[3])-mean
		q0 += d0 * d0
		q1 += d1 * d1
		q2 += d2 * d2
		q3 += d3 * d3
	}
	for _, v := range x[n:] {
		d := float64(v) - mean
		q0 += d * d
	}
	return mean, ((q0 + q1) + (q2 + q3)) / float64(len(x))
}
