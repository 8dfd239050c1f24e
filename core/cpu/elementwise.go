package cpu

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

// GELUTanh is GELU with the tanh approximation (nn.GELU(approximate='tanh')), evaluated in float64:
//
//	y = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
func (be *Backend) GELUTanh(x *core.Tensor) (*core.Tensor, error) {
	if be.fastMath {
		return be.unarySIMD("gelu", x, geluFast, fastGELU)
	}
	return be.unary("gelu", x, func(v float32) float32 {
		const (
			sqrt2OverPi = 0.7978845608028654 // sqrt(2/pi)
			kappa       = 0.044715
		)
		x := float64(v)
		return float32(0.5 * x * (1 + math.Tanh(sqrt2OverPi*(x+kappa*x*x*x))))
	})
}

// GELU is the exact GELU (nn.GELU(), approximate='none'), x times the standard normal CDF, evaluated in
// float64:
//
//	y = 0.5 * x * (1 + erf(x / sqrt(2)))
//
// Below x = -8.3 the float64 sum 1 + erf cancels to 0 (the true |y| is under 1e-15 there), as a float32
// one such as PyTorch's does from about x = -5.6.
func (be *Backend) GELU(x *core.Tensor) (*core.Tensor, error) {
	if be.fastMath {
		return be.unarySIMD("gelu-erf", x, geluErfFast, fastGELUErf)
	}
	return be.unary("gelu-erf", x, func(v float32) float32 {
		x := float64(v)
		return float32(0.5 * x * (1 + math.Erf(x/math.Sqrt2)))
	})
}

// SiLU is x * sigmoid(x) (F.silu, the VAE's "nonlinearity").
func (be *Backend) SiLU(x *core.Tensor) (*core.Tensor, error) {
	if be.fastMath {
		return be.unarySIMD("silu", x, siLUFast, fastSiLU)
	}
	return be.unary("silu", x, siLU)
}

// siLU is x * sigmoid(x) in float64, with the sigmoid evaluated as 1/(1+exp(-x)) for x >= 0 and as
// exp(x)/(1+exp(x)) for x < 0, so that exp never overflows (exp(x)/(1+exp(x)) alone is Inf/Inf = NaN for
// large x). Large finite |x| thus give exactly x (x >> 0) or a tiny non-positive number (x << 0). Infinite
// inputs follow IEEE arithmetic like PyTorch: silu(+Inf) = +Inf, silu(-Inf) = -Inf * 0 = NaN.
func siLU(v float32) float32 {
	x := float64(v)
	var sigmoid float64
	if x >= 0 {
		sigmoid = 1 / (1 + math.Exp(-x))
	} else {
		e := math.Exp(x)
		sigmoid = e / (1 + e)
	}
	return float32(x * sigmoid)
}

// Clamp limits every element to [lo, hi] (torch.clamp); NaN stays NaN as in PyTorch.
func (be *Backend) Clamp(x *core.Tensor, lo, hi float32) (*core.Tensor, error) {
	if !(lo <= hi) {
		return nil, fmt.Errorf("clamp: empty range [%v, %v]", lo, hi)
	}
	return be.unary("clamp", x, func(v float32) float32 {
		switch {
		case v < lo:
			return lo
		case v > hi:
			return hi
		}
		return v
	})
}

// unary applies f to every element of x.
func (be *Backend) unary(op string, x *core.Tensor, f func(float32) float32) (*core.Tensor, error) {
	return be.unarySIMD(op, x, f, nil)
}

// unarySIMD is unary with a SIMD loop (may be nil) that does the leading values of each range of
// elements with f's results and reports how many; f does the rest.
func (be *Backend) unarySIMD(op string, x *core.Tensor, f func(float32) float32, simd func(in, out []float32) int) (*core.Tensor, error) {
	in, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	y, out := newTensor(x.Shape()...)
	be.parallelElems(len(in), func(lo, hi int) {
		if simd != nil {
			lo += simd(in[lo:hi], out[lo:hi])
		}
		for i := lo; i < hi; i++ {
			out[i] = f(in[i])
		}
	})
	return y, nil
}

// Add is a + b where b's shape is a suffix of a's (b is broadcast over a's leading dimensions, e.g. a bias
// [C] or a position embedding [L, C] added to [B, L, C]).
func (be *Backend) Add(a, b *core.Tensor) (*core.Tensor, error) {
	const op = "add"
	a_data, err := floats(op, "a", a)
	if err != nil {
		return nil, err
	}
	b_data, err := floats(op, "b", b)
	if err != nil {
		return nil, err
	}
	as, bs := a.Shape(), b.Shape()
	if len(bs) > len(as) || !as[len(as)-len(bs):].Equal(bs) {
		return nil, shapeError(op, "b %v is not a suffix of a %v", bs, as)
	}
	y, out := newTensor(as...)
	n := len(b_data) // a is len(a)/n copies of b's shape
	be.parallelElems(len(a_data), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = a_data[i] + b_data[i%n]
		}
	})
	return y, nil
}

// AddMulRows is the gated residual of the AdaLN blocks: x + y * g[b] for x, y [B, L, C] and g [B, C]. The
// product is rounded to float32 before the sum, as in PyTorch (x + y.mul_(g)).
func (be *Backend) AddMulRows(x, y, g *core.Tensor) (*core.Tensor, error) {
	const op = "addmulrows"
	x_BLC, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	y_BLC, err := floats(op, "y", y)
	if err != nil {
		return nil, err
	}
	g_BC, err := floats(op, "g", g)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 3 || !y.Shape().Equal(xs) || !g.Shape().Equal(core.Shape{xs[0], xs[2]}) {
		return nil, shapeError(op, "want x, y [B, L, C] and g [B, C], got x %v, y %v, g %v", xs, y.Shape(), g.Shape())
	}
	L, C := xs[1], xs[2]
	out, out_BLC := newTensor(xs...)
	be.parallelElems(len(x_BLC), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			b, c := i/(L*C), i%C
			out_BLC[i] = x_BLC[i] + float32(y_BLC[i]*g_BC[b*C+c])
		}
	})
	return out, nil
}

// Axpby is alpha*x + beta*y for x and y of equal shape, each product rounded to float32 before the sum.
func (be *Backend) Axpby(alpha float32, x *core.Tensor, beta float32, y *core.Tensor) (*core.Tensor, error) {
	const op = "axpby"
	x_data, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	y_data, err := floats(op, "y", y)
	if err != nil {
		return nil, err
	}
	if !x.Shape().Equal(y.Shape()) {
		return nil, shapeError(op, "x %v and y %v differ", x.Shape(), y.Shape())
	}
	out, out_data := newTensor(x.Shape()...)
	be.parallelElems(len(x_data), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out_data[i] = float32(alpha*x_data[i]) + float32(beta*y_data[i])
		}
	})
	return out, nil
}

// DDPMStep is core.DDPMSample for every element: x [n, C], out [n or 2n, 2C], noise [n, C].
func (be *Backend) DDPMStep(x, out, noise *core.Tensor, s core.DDPMCoefs) (*core.Tensor, error) {
	const op = "ddpm-step"
	xd, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	od, err := floats(op, "out", out)
	if err != nil {
		return nil, err
	}
	nd, err := floats(op, "noise", noise)
	if err != nil {
		return nil, err
	}
	n, c, err := core.CheckDDPMStep(x.Shape(), out.Shape(), noise.Shape(), s.Guided)
	if err != nil {
		return nil, err
	}
	y, yd := newTensor(n, c)
	for r := range n {
		for j := range c {
			i := r*c + j
			var u float32
			if s.Guided {
				u = od[(n+r)*2*c+j]
			}
			yd[i] = core.DDPMSample(s, xd[i], od[r*2*c+j], u, od[r*2*c+c+j], nd[i])
		}
	}
	return y, nil
}
