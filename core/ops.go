package core

import (
	"errors"
	"fmt"
)

// Ops wraps a Backend for model code: each call returns only the result and the first error is kept
// (sticky), so a model's forward pass reads like the math and checks Err once at the end. After an error
// every further call is a no-op returning nil. An Ops is used by one goroutine at a time.
type Ops struct {
	B Backend
	// OnTap, when set, receives named intermediate tensors ("vae.dec.mid", "ar.s2.block0.out") as models
	// produce them: tests compare them with the golden tensors of the same name. It must not keep the
	// tensor beyond the call unless it downloads it.
	OnTap func(name string, t *Tensor)
	scope string
	err   error
}

// NewOps starts a fresh op sequence on b.
func NewOps(b Backend) *Ops { return &Ops{B: b} }

// Err returns the first error, prefixed with the scope (layer name) it happened in.
func (o *Ops) Err() error { return o.err }

// SetScope names the layer now running, for error messages; it returns the previous scope so that
// callers can restore it.
func (o *Ops) SetScope(s string) string {
	prev := o.scope
	o.scope = s
	return prev
}

// Fail records err (if it is the first) with the current scope.
func (o *Ops) Fail(op string, err error) {
	if o.err != nil || err == nil {
		return
	}
	var se *ShapeError
	if errors.As(err, &se) {
		op = "" // the shape error names its op already
	}
	switch {
	case op == "" && o.scope != "":
		o.err = fmt.Errorf("%s: %w", o.scope, err)
	case op == "":
		o.err = err
	case o.scope != "":
		o.err = fmt.Errorf("%s: %s: %w", o.scope, op, err)
	default:
		o.err = fmt.Errorf("%s: %w", op, err)
	}
}

func (o *Ops) do(op string, f func() (*Tensor, error)) *Tensor {
	if o.err != nil {
		return nil
	}
	t, err := f()
	if err != nil {
		o.Fail(op, err)
		return nil
	}
	return t
}

// ok reports whether all ts are non-nil; a nil input without a recorded error is a programming error in
// the model and is reported as such instead of crashing a backend.
func (o *Ops) ok(op string, ts ...*Tensor) bool {
	if o.err != nil {
		return false
	}
	for _, t := range ts {
		if t == nil {
			o.Fail(op, fmt.Errorf("nil tensor argument"))
			return false
		}
	}
	return true
}

// Tap reports an intermediate tensor to OnTap.
func (o *Ops) Tap(name string, t *Tensor) {
	if o.OnTap != nil && o.err == nil && t != nil {
		o.OnTap(name, t)
	}
}

// Free releases tensors that are no longer needed (nil entries are skipped).
func (o *Ops) Free(ts ...*Tensor) {
	for _, t := range ts {
		if t != nil {
			o.B.Free(t)
		}
	}
}

// ReleaseIdle gives memory a backend keeps for reuse back (IdleReleaser); a no-op on other backends. Like
// Free it runs after an error too (it only cleans up).
func (o *Ops) ReleaseIdle() {
	if r, ok := o.B.(IdleReleaser); ok {
		o.Fail("release-idle", r.ReleaseIdle())
	}
}

// Asynchronous reports whether the backend's ops only record work that a device runs later (Asynchronous).
func (o *Ops) Asynchronous() bool { return IsAsynchronous(o.B) }

func (o *Ops) Upload(h HostTensor) *Tensor {
	return o.do("upload", func() (*Tensor, error) { return o.B.Upload(h) })
}

func (o *Ops) Download(t *Tensor) HostTensor {
	if !o.ok("download", t) {
		return HostTensor{}
	}
	h, err := o.B.Download(t)
	o.Fail("download", err)
	return h
}

func (o *Ops) Reshape(t *Tensor, shape ...int) *Tensor {
	if !o.ok("reshape", t) {
		return nil
	}
	return o.do("reshape", func() (*Tensor, error) { return Reshape(t, shape...) })
}

// Linear: b may be nil.
func (o *Ops) Linear(x, w, b *Tensor) *Tensor {
	if !o.ok("linear", x, w) {
		return nil
	}
	return o.do("linear", func() (*Tensor, error) { return o.B.Linear(x, w, b) })
}

// LinearGELU is GELUTanh(Linear(x, w, b)), fused when the backend can (FusedLinearGELU).
func (o *Ops) LinearGELU(x, w, b *Tensor) *Tensor {
	if !o.ok("linear+gelu", x, w) {
		return nil
	}
	if f, ok := o.B.(FusedLinearGELU); ok {
		return o.do("linear+gelu", func() (*Tensor, error) { return f.LinearGELU(x, w, b) })
	}
	y := o.Linear(x, w, b)
	g := o.GELUTanh(y)
	o.Free(y)
	return g
}

// QKVToCache splits qkv [B, l, 3C] into q, k, v, L2-normalises q and k per head when norm (q times
// qScale[h], nil: 1), writes k and v into rows [n, n+l) of the caches kc, vc [B, S, C] and returns q:
// fused when the backend can (FusedQKVToCache).
func (o *Ops) QKVToCache(qkv *Tensor, heads int, norm bool, qScale, kc, vc *Tensor, n int) *Tensor {
	if !o.ok("qkv", qkv, kc, vc) {
		return nil
	}
	if f, ok := o.B.(FusedQKVToCache); ok {
		return o.do("qkv", func() (*Tensor, error) { return f.QKVToCache(qkv, heads, norm, qScale, kc, vc, n) })
	}
	s := qkv.Shape()
	if len(s) != 3 || s[2]%3 != 0 {
		o.Fail("qkv", &ShapeError{Op: "qkv", Msg: fmt.Sprintf("want qkv [B, l, 3C], got %v", s)})
		return nil
	}
	C := s[2] / 3
	q, k, v := o.SliceLast(qkv, 0, C), o.SliceLast(qkv, C, C), o.SliceLast(qkv, 2*C, C)
	if norm {
		qn, kn := o.NormalizeHeads(q, heads, qScale), o.NormalizeHeads(k, heads, nil)
		o.Free(q, k)
		q, k = qn, kn
	}
	o.WriteRows(kc, k, n)
	o.WriteRows(vc, v, n)
	o.Free(k, v)
	return q
}

// Attention: mask may be nil.
func (o *Ops) Attention(q, k, v *Tensor, heads int, scale float32, mask *Tensor) *Tensor {
	if !o.ok("attention", q, k, v) {
		return nil
	}
	return o.do("attention", func() (*Tensor, error) { return o.B.Attention(q, k, v, heads, scale, mask) })
}

// AttentionPrefix attends to the first n rows of the caches k and v.
func (o *Ops) AttentionPrefix(q, k, v *Tensor, n, heads int, scale float32) *Tensor {
	if !o.ok("attention", q, k, v) {
		return nil
	}
	return o.do("attention", func() (*Tensor, error) { return o.B.AttentionPrefix(q, k, v, n, heads, scale) })
}

func (o *Ops) LayerNorm(x *Tensor, eps float32) *Tensor {
	if !o.ok("layernorm", x) {
		return nil
	}
	return o.do("layernorm", func() (*Tensor, error) { return o.B.LayerNorm(x, eps) })
}

// LayerNormAffine: b may be nil.
func (o *Ops) LayerNormAffine(x, w, b *Tensor, eps float32) *Tensor {
	if !o.ok("layernorm", x, w) {
		return nil
	}
	return o.do("layernorm", func() (*Tensor, error) { return o.B.LayerNormAffine(x, w, b, eps) })
}

func (o *Ops) Modulate(x, scale, shift *Tensor) *Tensor {
	if !o.ok("modulate", x, scale, shift) {
		return nil
	}
	return o.do("modulate", func() (*Tensor, error) { return o.B.Modulate(x, scale, shift) })
}

func (o *Ops) GroupNorm(x *Tensor, groups int, w, b *Tensor, eps float32, silu bool) *Tensor {
	if !o.ok("groupnorm", x, w, b) {
		return nil
	}
	return o.do("groupnorm", func() (*Tensor, error) { return o.B.GroupNorm(x, groups, w, b, eps, silu) })
}

// NormalizeHeads: scale may be nil.
func (o *Ops) NormalizeHeads(x *Tensor, heads int, scale *Tensor) *Tensor {
	if !o.ok("normalize", x) {
		return nil
	}
	return o.do("normalize", func() (*Tensor, error) { return o.B.NormalizeHeads(x, heads, scale) })
}

func (o *Ops) GELUTanh(x *Tensor) *Tensor {
	if !o.ok("gelu", x) {
		return nil
	}
	return o.do("gelu", func() (*Tensor, error) { return o.B.GELUTanh(x) })
}

// GELU is the exact (erf) GELU; GELUTanh is its tanh approximation.
func (o *Ops) GELU(x *Tensor) *Tensor {
	if !o.ok("gelu-erf", x) {
		return nil
	}
	return o.do("gelu-erf", func() (*Tensor, error) { return o.B.GELU(x) })
}

func (o *Ops) SiLU(x *Tensor) *Tensor {
	if !o.ok("silu", x) {
		return nil
	}
	return o.do("silu", func() (*Tensor, error) { return o.B.SiLU(x) })
}

// DDPMStep: see Backend.DDPMStep.
func (o *Ops) DDPMStep(x, out, noise *Tensor, s DDPMCoefs) *Tensor {
	if !o.ok("ddpm-step", x, out, noise) {
		return nil
	}
	return o.do("ddpm-step", func() (*Tensor, error) { return o.B.DDPMStep(x, out, noise, s) })
}

func (o *Ops) Add(a, b *Tensor) *Tensor {
	if !o.ok("add", a, b) {
		return nil
	}
	return o.do("add", func() (*Tensor, error) { return o.B.Add(a, b) })
}

func (o *Ops) AddMulRows(x, y, g *Tensor) *Tensor {
	if !o.ok("addmulrows", x, y, g) {
		return nil
	}
	return o.do("addmulrows", func() (*Tensor, error) { return o.B.AddMulRows(x, y, g) })
}

func (o *Ops) Axpby(alpha float32, x *Tensor, beta float32, y *Tensor) *Tensor {
	if !o.ok("axpby", x, y) {
		return nil
	}
	return o.do("axpby", func() (*Tensor, error) { return o.B.Axpby(alpha, x, beta, y) })
}

func (o *Ops) Clamp(x *Tensor, lo, hi float32) *Tensor {
	if !o.ok("clamp", x) {
		return nil
	}
	return o.do("clamp", func() (*Tensor, error) { return o.B.Clamp(x, lo, hi) })
}

func (o *Ops) SliceLast(x *Tensor, off, n int) *Tensor {
	if !o.ok("slice", x) {
		return nil
	}
	return o.do("slice", func() (*Tensor, error) { return o.B.SliceLast(x, off, n) })
}

func (o *Ops) Concat(axis int, ts ...*Tensor) *Tensor {
	if !o.ok("concat", ts...) {
		return nil
	}
	return o.do("concat", func() (*Tensor, error) { return o.B.Concat(axis, ts...) })
}

func (o *Ops) Transpose12(x *Tensor) *Tensor {
	if !o.ok("transpose", x) {
		return nil
	}
	return o.do("transpose", func() (*Tensor, error) { return o.B.Transpose12(x) })
}

func (o *Ops) Zeros(shape ...int) *Tensor {
	return o.do("zeros", func() (*Tensor, error) { return o.B.Zeros(Shape(shape)) })
}

// WriteRows writes src into rows [off, off+n) of dst, in place (see Backend.WriteRows).
func (o *Ops) WriteRows(dst, src *Tensor, off int) {
	if !o.ok("write-rows", dst, src) {
		return
	}
	o.Fail("write-rows", o.B.WriteRows(dst, src, off))
}

// Conv2d: b may be nil.
func (o *Ops) Conv2d(x, w, b *Tensor, stride int, pad [4]int) *Tensor {
	if !o.ok("conv2d", x, w) {
		return nil
	}
	return o.do("conv2d", func() (*Tensor, error) { return o.B.Conv2d(x, w, b, stride, pad) })
}

// Conv2dAdd is res + Conv2d(x, w, b, stride, pad), fused when the backend can (FusedConv2dAdd).
func (o *Ops) Conv2dAdd(x, w, b *Tensor, stride int, pad [4]int, res *Tensor) *Tensor {
	if !o.ok("conv2d+add", x, w, res) {
		return nil
	}
	if f, ok := o.B.(FusedConv2dAdd); ok {
		return o.do("conv2d+add", func() (*Tensor, error) { return f.Conv2dAdd(x, w, b, stride, pad, res) })
	}
	y := o.Conv2d(x, w, b, stride, pad)
	out := o.Add(res, y)
	o.Free(y)
	return out
}

func (o *Ops) Upsample2x(x *Tensor) *Tensor {
	if !o.ok("upsample2x", x) {
		return nil
	}
	return o.do("upsample2x", func() (*Tensor, error) { return o.B.Upsample2x(x) })
}

func (o *Ops) ResizeBicubic(x *Tensor, h, w int) *Tensor {
	if !o.ok("bicubic", x) {
		return nil
	}
	return o.do("bicubic", func() (*Tensor, error) { return o.B.ResizeBicubic(x, h, w) })
}

func (o *Ops) ResizeArea(x *Tensor, h, w int) *Tensor {
	if !o.ok("area", x) {
		return nil
	}
	return o.do("area", func() (*Tensor, error) { return o.B.ResizeArea(x, h, w) })
}

func (o *Ops) Embedding(table *Tensor, ids []int) *Tensor {
	if !o.ok("embedding", table) {
		return nil
	}
	return o.do("embedding", func() (*Tensor, error) { return o.B.Embedding(table, ids) })
}

func (o *Ops) NearestCode(z, codebook *Tensor) []int {
	if !o.ok("nearest-code", z, codebook) {
		return nil
	}
	ids, err := o.B.NearestCode(z, codebook)
	o.Fail("nearest-code", err)
	return ids
}
