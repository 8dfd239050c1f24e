// Package convnet is the convolutional encoder/decoder shared by the image tokenizers of every family:
// VAR's multi-scale VQVAE and MAR's KL-16 VAE (the taming/LDM layout: encoder.down.N.block.M, mid.block_1)
// and FlexVAR's LlamaGen VQ-16 tokenizer (conv_blocks.N.res.M, mid.0). The blocks are the same in both:
// GroupNorm(32, eps 1e-6) + SiLU, res blocks with an optional 1x1 nin_shortcut, single-head attention
// blocks (a fused qkv conv, or separate q, k, v convs concatenated at load), Downsample2x (pad right and
// bottom by one, 3x3 stride-2 conv) and Upsample2x (nearest, then a 3x3 conv). The architecture is read
// from the checkpoint's key names and shapes.
package convnet

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

const (
	// NormGroups and NormEps are the GroupNorm of every block in both layouts.
	NormGroups = 32
	NormEps    = 1e-6
)

// Conv is a loaded 2-D convolution.
type Conv struct {
	W, B      *core.Tensor // [Co, Ci, k, k], [Co]
	Stride    int
	Pad       [4]int // top, left, bottom, right
	Cout, Cin int
	K         int // kernel side
}

// Apply is the convolution of x [B, Ci, H, W].
func (c *Conv) Apply(o *core.Ops, x *core.Tensor) *core.Tensor {
	return o.Conv2d(x, c.W, c.B, c.Stride, c.Pad)
}

// ApplyAdd is res + Apply(x), in one op where the backend fuses them.
func (c *Conv) ApplyAdd(o *core.Ops, x, res *core.Tensor) *core.Tensor {
	return o.Conv2dAdd(x, c.W, c.B, c.Stride, c.Pad, res)
}

// Norm is a GroupNorm's affine parameters.
type Norm struct{ W, B *core.Tensor }

// Apply is GroupNorm(32, eps 1e-6) of x, then SiLU when silu is set.
func (n *Norm) Apply(o *core.Ops, x *core.Tensor, silu bool) *core.Tensor {
	return o.GroupNorm(x, NormGroups, n.W, n.B, NormEps, silu)
}

// ResBlock: h = conv1(silu(norm1(x))); h = conv2(silu(norm2(h))); out = shortcut(x) + h, with a 1x1
// nin_shortcut when the channel count changes.
type ResBlock struct {
	Norm1, Norm2 Norm
	Conv1, Conv2 Conv
	Shortcut     *Conv
}

// Apply runs the block on x [B, C, H, W].
func (r *ResBlock) Apply(o *core.Ops, x *core.Tensor) *core.Tensor {
	// Every intermediate is freed as soon as it is read: on a GPU backend an unfreed tensor keeps its
	// buffer for good (the norms here once leaked two full-resolution activations per block per decode).
	n1 := r.Norm1.Apply(o, x, true)
	h := r.Conv1.Apply(o, n1)
	o.Free(n1)
	n2 := r.Norm2.Apply(o, h, true)
	o.Free(h)
	res := x
	if r.Shortcut != nil {
		res = r.Shortcut.Apply(o, x)
	}
	// The residual is added by the conv itself where the backend can (Ops.Conv2dAdd).
	out := r.Conv2.ApplyAdd(o, n2, res)
	o.Free(n2)
	if res != x {
		o.Free(res)
	}
	return out
}

// AttnBlock: single-head self-attention over the H*W positions with a fused 1x1 qkv conv, scale C^-0.5,
// then a 1x1 projection and the residual.
type AttnBlock struct {
	Norm      Norm
	QKV, Proj Conv
	C         int
}

// Apply runs the block on x [B, C, H, W].
func (a *AttnBlock) Apply(o *core.Ops, x *core.Tensor) *core.Tensor {
	if !OKShape(o, x, 4) {
		return nil
	}
	s := x.Shape()
	b, c, h, w := s[0], s[1], s[2], s[3]
	n := a.Norm.Apply(o, x, false)
	qkv := a.QKV.Apply(o, n) // [B, 3C, H, W]
	o.Free(n)
	qkvT := o.Transpose12(o.Reshape(qkv, b, 3*c, h*w)) // [B, HW, 3C]
	q, k, v := o.SliceLast(qkvT, 0, c), o.SliceLast(qkvT, c, c), o.SliceLast(qkvT, 2*c, c)
	att := o.Attention(q, k, v, 1, float32(1/math.Sqrt(float64(c))), nil) // [B, HW, C]
	hBCHW := o.Reshape(o.Transpose12(att), b, c, h, w)
	out := a.Proj.ApplyAdd(o, hBCHW, x)
	o.Free(qkv, qkvT, q, k, v, att, hBCHW)
	return out
}

// OKShape records an error on o and reports false unless o is error-free and x has the given rank.
func OKShape(o *core.Ops, x *core.Tensor, rank int) bool {
	if o.Err() != nil {
		return false
	}
	if x == nil || len(x.Shape()) != rank {
		o.Fail("shape", fmt.Errorf("want a rank-%d tensor", rank))
		return false
	}
	return true
}

// Builder loads layers while tracking the channel count flowing through the network, so a checkpoint
// whose shapes do not chain is rejected at load time with the tensor named. The first error sticks.
type Builder struct {
	W   *core.Weights
	Err error
}

// Fail records err unless an error is already recorded.
func (bd *Builder) Fail(err error) {
	if bd.Err == nil {
		bd.Err = err
	}
}

// Pad1 is the padding of a 3x3 conv that keeps the size.
var Pad1 = [4]int{1, 1, 1, 1}

// Conv loads <name>.weight [Co, cin, k, k] and <name>.bias [Co]; it returns the layer (Cout set).
func (bd *Builder) Conv(name string, cin, k, stride int, pad [4]int) Conv {
	if bd.Err != nil {
		return Conv{}
	}
	ws := bd.W.Shape(name + ".weight")
	if ws == nil {
		bd.Fail(&core.WeightError{Tensor: name + ".weight", Msg: "missing from checkpoint"})
		return Conv{}
	}
	if len(ws) != 4 || ws[1] != cin || ws[2] != k || ws[3] != k {
		bd.Fail(&core.WeightError{Tensor: name + ".weight", Msg: fmt.Sprintf("shape %v, want [*, %d, %d, %d]", ws, cin, k, k)})
		return Conv{}
	}
	c := Conv{Stride: stride, Pad: pad, Cout: ws[0], Cin: cin, K: k}
	c.W = bd.Tensor(name+".weight", ws...)
	c.B = bd.Tensor(name+".bias", ws[0])
	return c
}

// Tensor loads a float tensor of the given shape.
func (bd *Builder) Tensor(name string, shape ...int) *core.Tensor {
	if bd.Err != nil {
		return nil
	}
	t, err := bd.W.Tensor(name, shape...)
	bd.Fail(err)
	return t
}

// Norm loads a GroupNorm over c channels.
func (bd *Builder) Norm(name string, c int) Norm {
	if bd.Err == nil && c%NormGroups != 0 {
		bd.Fail(&core.WeightError{Tensor: name + ".weight", Msg: fmt.Sprintf("%d channels do not split into %d groups", c, NormGroups)})
	}
	return Norm{W: bd.Tensor(name+".weight", c), B: bd.Tensor(name+".bias", c)}
}

// ResBlock loads a res block taking cin channels; it returns the block and its output channels.
func (bd *Builder) ResBlock(name string, cin int) (*ResBlock, int) {
	r := &ResBlock{}
	r.Norm1 = bd.Norm(name+".norm1", cin)
	r.Conv1 = bd.Conv(name+".conv1", cin, 3, 1, Pad1)
	cout := r.Conv1.Cout
	r.Norm2 = bd.Norm(name+".norm2", cout)
	r.Conv2 = bd.Conv(name+".conv2", cout, 3, 1, Pad1)
	if bd.Err == nil && r.Conv2.Cout != cout {
		bd.Fail(&core.WeightError{Tensor: name + ".conv2.weight", Msg: fmt.Sprintf("%d output channels, want %d", r.Conv2.Cout, cout)})
	}
	if bd.W.Has(name + ".nin_shortcut.weight") {
		s := bd.Conv(name+".nin_shortcut", cin, 1, 1, [4]int{})
		r.Shortcut = &s
	} else if bd.Err == nil && cin != cout {
		bd.Fail(&core.WeightError{Tensor: name + ".nin_shortcut.weight", Msg: fmt.Sprintf("missing (channels change %d -> %d)", cin, cout)})
	}
	return r, cout
}

// HasAttn reports whether name is an attention block in either storage: a fused qkv conv or separate
// q, k and v convs.
func (bd *Builder) HasAttn(name string) bool {
	return bd.W.Has(name+".qkv.weight") || bd.W.Has(name+".q.weight")
}

// AttnBlock loads an attention block over c channels. Separate q, k, v convs (LlamaGen, LDM) are
// concatenated into one [3C, C, 1, 1] qkv conv on the host, so both storages run the same kernels.
func (bd *Builder) AttnBlock(name string, c int) *AttnBlock {
	a := &AttnBlock{C: c}
	a.Norm = bd.Norm(name+".norm", c)
	if bd.W.Has(name + ".qkv.weight") {
		a.QKV = bd.Conv(name+".qkv", c, 1, 1, [4]int{})
	} else {
		a.QKV = bd.concatConvs(name, []string{".q", ".k", ".v"}, c)
	}
	if bd.Err == nil && a.QKV.Cout != 3*c {
		bd.Fail(&core.WeightError{Tensor: name + ".qkv.weight", Msg: fmt.Sprintf("%d output channels, want %d", a.QKV.Cout, 3*c)})
	}
	a.Proj = bd.Conv(name+".proj_out", c, 1, 1, [4]int{})
	if bd.Err == nil && a.Proj.Cout != c {
		bd.Fail(&core.WeightError{Tensor: name + ".proj_out.weight", Msg: fmt.Sprintf("%d output channels, want %d", a.Proj.Cout, c)})
	}
	return a
}

// concatConvs loads the 1x1 convs name+parts[i], each [C, C, 1, 1] with bias [C], as one conv whose
// output channels are theirs side by side.
func (bd *Builder) concatConvs(name string, parts []string, c int) Conv {
	if bd.Err != nil {
		return Conv{}
	}
	n := len(parts)
	w := make([]float32, 0, n*c*c)
	b := make([]float32, 0, n*c)
	for _, p := range parts {
		hw, err := bd.W.Host(name+p+".weight", c, c, 1, 1)
		if err != nil {
			bd.Fail(err)
			return Conv{}
		}
		hb, err := bd.W.Host(name+p+".bias", c)
		if err != nil {
			bd.Fail(err)
			return Conv{}
		}
		w = append(w, hw.Data...)
		b = append(b, hb.Data...)
	}
	cv := Conv{Stride: 1, Cout: n * c, Cin: c, K: 1}
	var err error
	if cv.W, err = bd.W.B.Upload(core.HostTensor{Shape: core.Shape{n * c, c, 1, 1}, Data: w}); err != nil {
		bd.Fail(err)
		return Conv{}
	}
	if cv.B, err = bd.W.B.Upload(core.HostTensor{Shape: core.Shape{n * c}, Data: b}); err != nil {
		bd.Fail(err)
		return Conv{}
	}
	return cv
}
