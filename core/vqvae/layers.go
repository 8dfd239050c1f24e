package vqvae

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

// The taming/LDM building blocks of VAR's VQVAE (models/basic_vae.py). GroupNorm is always 32 groups with
// eps 1e-6; every activation is SiLU.

const (
	normGroups = 32
	normEps    = 1e-6
)

type conv struct {
	w, b   *core.Tensor // [Co, Ci, k, k], [Co]
	stride int
	pad    [4]int // top, left, bottom, right
	cout   int
}

func (c *conv) apply(o *core.Ops, x *core.Tensor) *core.Tensor {
	return o.Conv2d(x, c.w, c.b, c.stride, c.pad)
}

// applyAdd is res + apply(x).
func (c *conv) applyAdd(o *core.Ops, x, res *core.Tensor) *core.Tensor {
	return o.Conv2dAdd(x, c.w, c.b, c.stride, c.pad, res)
}

type norm struct{ w, b *core.Tensor }

func (n *norm) apply(o *core.Ops, x *core.Tensor, silu bool) *core.Tensor {
	return o.GroupNorm(x, normGroups, n.w, n.b, normEps, silu)
}

// resBlock: h = conv1(silu(norm1(x))); h = conv2(silu(norm2(h))); out = shortcut(x) + h, with a 1x1
// nin_shortcut when the channel count changes.
type resBlock struct {
	norm1, norm2 norm
	conv1, conv2 conv
	shortcut     *conv
}

func (r *resBlock) apply(o *core.Ops, x *core.Tensor) *core.Tensor {
	// Every intermediate is freed as soon as it is read: on a GPU backend an unfreed tensor keeps its
	// buffer for good (the norms here once leaked two full-resolution activations per block per decode).
	n1 := r.norm1.apply(o, x, true)
	h := r.conv1.apply(o, n1)
	o.Free(n1)
	n2 := r.norm2.apply(o, h, true)
	o.Free(h)
	res := x
	if r.shortcut != nil {
		res = r.shortcut.apply(o, x)
	}
	// The residual is added by the conv itself where the backend can (Ops.Conv2dAdd).
	out := r.conv2.applyAdd(o, n2, res)
	o.Free(n2)
	if res != x {
		o.Free(res)
	}
	return out
}

// attnBlock: single-head self-attention over the H*W positions with a fused 1x1 qkv conv, scale C^-0.5,
// then a 1x1 projection and the residual.
type attnBlock struct {
	norm      norm
	qkv, proj conv
	c         int
}

func (a *attnBlock) apply(o *core.Ops, x *core.Tensor) *core.Tensor {
	if !okShape(o, x, 4) {
		return nil
	}
	s := x.Shape()
	b, c, h, w := s[0], s[1], s[2], s[3]
	n := a.norm.apply(o, x, false)
	qkv := a.qkv.apply(o, n) // [B, 3C, H, W]
	o.Free(n)
	qkvT := o.Transpose12(o.Reshape(qkv, b, 3*c, h*w)) // [B, HW, 3C]
	q, k, v := o.SliceLast(qkvT, 0, c), o.SliceLast(qkvT, c, c), o.SliceLast(qkvT, 2*c, c)
	att := o.Attention(q, k, v, 1, float32(1/math.Sqrt(float64(c))), nil) // [B, HW, C]
	hBCHW := o.Reshape(o.Transpose12(att), b, c, h, w)
	out := a.proj.applyAdd(o, hBCHW, x)
	o.Free(qkv, qkvT, q, k, v, att, hBCHW)
	return out
}

func okShape(o *core.Ops, x *core.Tensor, rank int) bool {
	if o.Err() != nil {
		return false
	}
	if x == nil || len(x.Shape()) != rank {
		o.Fail("shape", fmt.Errorf("want a rank-%d tensor", rank))
		return false
	}
	return true
}

// builder loads layers while tracking the channel count flowing through the network, so a checkpoint whose
// shapes do not chain is rejected at load time with the tensor named.
type builder struct {
	w   *core.Weights
	err error
}

func (bd *builder) fail(err error) {
	if bd.err == nil {
		bd.err = err
	}
}

// conv loads <name>.weight [Co, cin, k, k] and <name>.bias [Co]; it returns the layer (cout set).
func (bd *builder) conv(name string, cin, k, stride int, pad [4]int) conv {
	if bd.err != nil {
		return conv{}
	}
	ws := bd.w.Shape(name + ".weight")
	if ws == nil {
		bd.fail(&core.WeightError{Tensor: name + ".weight", Msg: "missing from checkpoint"})
		return conv{}
	}
	if len(ws) != 4 || ws[1] != cin || ws[2] != k || ws[3] != k {
		bd.fail(&core.WeightError{Tensor: name + ".weight", Msg: fmt.Sprintf("shape %v, want [*, %d, %d, %d]", ws, cin, k, k)})
		return conv{}
	}
	c := conv{stride: stride, pad: pad, cout: ws[0]}
	c.w = bd.tensor(name+".weight", ws...)
	c.b = bd.tensor(name+".bias", ws[0])
	return c
}

func (bd *builder) tensor(name string, shape ...int) *core.Tensor {
	if bd.err != nil {
		return nil
	}
	t, err := bd.w.Tensor(name, shape...)
	bd.fail(err)
	return t
}

func (bd *builder) norm(name string, c int) norm {
	if bd.err == nil && c%normGroups != 0 {
		bd.fail(&core.WeightError{Tensor: name + ".weight", Msg: fmt.Sprintf("%d channels do not split into %d groups", c, normGroups)})
	}
	return norm{w: bd.tensor(name+".weight", c), b: bd.tensor(name+".bias", c)}
}

var pad1 = [4]int{1, 1, 1, 1}

func (bd *builder) resBlock(name string, cin int) (*resBlock, int) {
	r := &resBlock{}
	r.norm1 = bd.norm(name+".norm1", cin)
	r.conv1 = bd.conv(name+".conv1", cin, 3, 1, pad1)
	cout := r.conv1.cout
	r.norm2 = bd.norm(name+".norm2", cout)
	r.conv2 = bd.conv(name+".conv2", cout, 3, 1, pad1)
	if bd.err == nil && r.conv2.cout != cout {
		bd.fail(&core.WeightError{Tensor: name + ".conv2.weight", Msg: fmt.Sprintf("%d output channels, want %d", r.conv2.cout, cout)})
	}
	if bd.w.Has(name + ".nin_shortcut.weight") {
		s := bd.conv(name+".nin_shortcut", cin, 1, 1, [4]int{})
		r.shortcut = &s
	} else if bd.err == nil && cin != cout {
		bd.fail(&core.WeightError{Tensor: name + ".nin_shortcut.weight", Msg: fmt.Sprintf("missing (channels change %d -> %d)", cin, cout)})
	}
	return r, cout
}

func (bd *builder) attnBlock(name string, c int) *attnBlock {
	a := &attnBlock{c: c}
	a.norm = bd.norm(name+".norm", c)
	a.qkv = bd.conv(name+".qkv", c, 1, 1, [4]int{})
	if bd.err == nil && a.qkv.cout != 3*c {
		bd.fail(&core.WeightError{Tensor: name + ".qkv.weight", Msg: fmt.Sprintf("%d output channels, want %d", a.qkv.cout, 3*c)})
	}
	a.proj = bd.conv(name+".proj_out", c, 1, 1, [4]int{})
	if bd.err == nil && a.proj.cout != c {
		bd.fail(&core.WeightError{Tensor: name + ".proj_out.weight", Msg: fmt.Sprintf("%d output channels, want %d", a.proj.cout, c)})
	}
	return a
}
