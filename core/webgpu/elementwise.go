package webgpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// elemKernel is a variant of shaders/elementwise.wgsl: an expression over x = a[i], b[bi], c[ci].
type elemKernel struct {
	WG     int
	Inputs int
	Expr   string
	Erf    bool // define gelu_erf() (with its float32 erf) for Expr
}

const elemWG = 256

var (
	geluExpr  = geluOf("x")
	geluErf   = "gelu_erf(x)" // the exact GELU (elemKernel.Erf)
	siluExpr  = "x / (1.0 + exp(-x))"
	clampExpr = "clamp(x, p.lo, p.hi)"
	axpbyExpr = "p.alpha * x + p.beta * b[bi]"
	addExpr   = "x + b[bi]"
	gateExpr  = "x + b[bi] * c[ci]"         // AddMulRows: x + y * g[b]
	modExpr   = "x * (1.0 + b[ci]) + c[ci]" // Modulate: x * (1 + scale[b]) + shift[b]
)

// geluOf is GELU's tanh approximation of the WGSL value v, as one expression: the elementwise kernel's
// and the one the matmul kernels apply at the store. tanh's argument is clamped: some drivers compute
// it as a ratio of exponentials that overflows to NaN.
func geluOf(v string) string {
	return fmt.Sprintf("0.5 * %[1]s * (1.0 + tanh(clamp(0.7978845608028654 * (%[1]s + 0.044715 * %[1]s * %[1]s * %[1]s), -15.0, 15.0)))", v)
}

// elementwise runs one elementwise variant; the output has a's shape.
func (b *Backend) elementwise(op, expr string, ins []*core.Tensor, u [8]uint32) (*core.Tensor, error) {
	return b.elementwiseKernel(op, elemKernel{WG: elemWG, Inputs: len(ins), Expr: expr}, ins, u)
}

// elementwiseKernel runs the variant ek (ek.Inputs = len(ins)).
func (b *Backend) elementwiseKernel(op string, ek elemKernel, ins []*core.Tensor, u [8]uint32) (*core.Tensor, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bufs := make([]*gpuBuf, 0, len(ins)+1)
	for _, t := range ins {
		g, err := b.storage(t, op)
		if err != nil {
			return nil, err
		}
		bufs = append(bufs, g)
	}
	n := ins[0].Shape().Numel()
	out, err := b.alloc(uint64(max(n, 1))*4, op)
	if err != nil {
		return nil, err
	}
	bufs = append(bufs, out)
	u[0] = uint32(n)
	k := kernel{file: "elementwise.wgsl", params: ek, inputs: len(ins), outputs: 1}
	if n > 0 {
		if err := b.dispatch(op, k, u[:], bufs, grid1D(n, elemWG)); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(ins[0].Shape(), out), nil
}

func (b *Backend) GELUTanh(x *core.Tensor) (*core.Tensor, error) {
	return b.elementwise("gelu", geluExpr, []*core.Tensor{x}, [8]uint32{})
}

// GELU is the exact GELU, 0.5 * x * (1 + erf(x / sqrt(2))), with WGSL's missing erf written out in
// float32 (shaders/elementwise.wgsl).
func (b *Backend) GELU(x *core.Tensor) (*core.Tensor, error) {
	return b.elementwiseKernel("gelu-erf", elemKernel{WG: elemWG, Inputs: 1, Expr: geluErf, Erf: true}, []*core.Tensor{x}, [8]uint32{})
}

func (b *Backend) SiLU(x *core.Tensor) (*core.Tensor, error) {
	return b.elementwise("silu", siluExpr, []*core.Tensor{x}, [8]uint32{})
}

func (b *Backend) Clamp(x *core.Tensor, lo, hi float32) (*core.Tensor, error) {
	if !(lo <= hi) {
		return nil, &core.ShapeError{Op: "clamp", Msg: fmt.Sprintf("lo %v > hi %v", lo, hi)}
	}
	return b.elementwise("clamp", clampExpr, []*core.Tensor{x}, [8]uint32{6: f32bits(lo), 7: f32bits(hi)})
}

func (b *Backend) Axpby(alpha float32, x *core.Tensor, beta float32, y *core.Tensor) (*core.Tensor, error) {
	if x == nil || y == nil || !x.Shape().Equal(y.Shape()) {
		return nil, &core.ShapeError{Op: "axpby", Msg: "x and y must have equal shapes"}
	}
	n := uint32(x.Shape().Numel())
	return b.elementwise("axpby", axpbyExpr, []*core.Tensor{x, y}, [8]uint32{1: max(n, 1), 4: f32bits(alpha), 5: f32bits(beta)})
}

func (b *Backend) Add(a, c *core.Tensor) (*core.Tensor, error) {
	if a == nil || c == nil {
		return nil, &core.ShapeError{Op: "add", Msg: "nil tensor"}
	}
	as, cs := a.Shape(), c.Shape()
	if len(cs) > len(as) || !as[len(as)-len(cs):].Equal(cs) {
		return nil, &core.ShapeError{Op: "add", Msg: fmt.Sprintf("%v is not a suffix of %v", cs, as)}
	}
	return b.elementwise("add", addExpr, []*core.Tensor{a, c}, [8]uint32{1: uint32(max(cs.Numel(), 1))})
}

// rowsCheck validates x, y [B, L, C] (y may be nil) against rows [B, C].
func rowsCheck(op string, x, y *core.Tensor, rows ...*core.Tensor) (bsz, l, c int, err error) {
	if x == nil || len(x.Shape()) != 3 {
		return 0, 0, 0, &core.ShapeError{Op: op, Msg: "x must be [B, L, C]"}
	}
	s := x.Shape()
	bsz, l, c = s[0], s[1], s[2]
	if y != nil && !y.Shape().Equal(s) {
		return 0, 0, 0, &core.ShapeError{Op: op, Msg: fmt.Sprintf("y %v differs from x %v", y.Shape(), s)}
	}
	for _, r := range rows {
		if r == nil || !r.Shape().Equal(core.Shape{bsz, c}) {
			return 0, 0, 0, &core.ShapeError{Op: op, Msg: fmt.Sprintf("rows must be [%d, %d]", bsz, c)}
		}
	}
	return bsz, l, c, nil
}

func (b *Backend) AddMulRows(x, y, g *core.Tensor) (*core.Tensor, error) {
	_, l, c, err := rowsCheck("addmulrows", x, y, g)
	if err != nil {
		return nil, err
	}
	n := uint32(x.Shape().Numel())
	return b.elementwise("addmulrows", gateExpr, []*core.Tensor{x, y, g}, [8]uint32{1: max(n, 1), 2: uint32(max(l*c, 1)), 3: uint32(max(c, 1))})
}

func (b *Backend) Modulate(x, scale, shift *core.Tensor) (*core.Tensor, error) {
	_, l, c, err := rowsCheck("modulate", x, nil, scale, shift)
	if err != nil {
		return nil, err
	}
	return b.elementwise("modulate", modExpr, []*core.Tensor{x, scale, shift}, [8]uint32{1: 1, 2: uint32(max(l*c, 1)), 3: uint32(max(c, 1))})
}

var _ core.Backend = (*Backend)(nil)

// DDPMStep is core.DDPMSample for every element (shaders/ddpm.wgsl).
func (b *Backend) DDPMStep(x, out, noise *core.Tensor, s core.DDPMCoefs) (*core.Tensor, error) {
	const op = "ddpm-step"
	if x == nil || out == nil || noise == nil {
		return nil, fmt.Errorf("%s: nil operand", op)
	}
	n, c, err := core.CheckDDPMStep(x.Shape(), out.Shape(), noise.Shape(), s.Guided)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var bufs []*gpuBuf
	for _, t := range []*core.Tensor{x, out, noise} {
		g, err := b.storage(t, op)
		if err != nil {
			return nil, err
		}
		bufs = append(bufs, g)
	}
	y, err := b.alloc(uint64(max(n*c, 1))*4, op)
	if err != nil {
		return nil, err
	}
	guided := uint32(0)
	if s.Guided {
		guided = 1
	}
	u := []uint32{uint32(n), uint32(c), guided, 0, f32bits(s.CFG), f32bits(s.SqrtRecipAcp), f32bits(s.SqrtRecipm1Acp),
		f32bits(s.Coef1), f32bits(s.Coef2), f32bits(s.MinLog), f32bits(s.MaxLog), f32bits(s.Nonzero), f32bits(s.Temperature)}
	if n*c > 0 {
		k := kernel{file: "ddpm.wgsl", params: struct{}{}, inputs: 3, outputs: 1}
		if err := b.dispatch(op, k, u, append(bufs, y), grid1D(n*c, 256)); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(core.Shape{n, c}, y), nil
}
