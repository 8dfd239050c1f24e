package cpu

// Float32 versions of the elementwise functions, used by New's backend (Backend.fastMath): the reference
// code evaluates them in float64 with math.Exp and math.Tanh, several times slower per element and a
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

// groupNormFast normalises one channel of a group: out = (in - mean)*rstd*w + b, as in = in*s + t with s
// and t folded once in float64 and rounded to float32; then SiLU if silu.
func groupNormFast(in, out []float32, mean, rstd float64, w, b float32, silu bool) {
	s := rstd * float64(w)
	scale, shift := float32(s), float32(float64(b)-mean*s)
	out = out[:len(in)]
	if silu {
		done := 0
		if fastSiLUAffine != nil {
			done = fastSiLUAffine(in, out, scale, shift)
		}
		for p, v := range in[done:] {
			out[done+p] = siLUFast(v*scale + shift)
		}
		return
	}
	for p, v := range in {
		out[p] = v*scale + shift
	}
}
