package nn

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

// Linear is a weight [out, in] (possibly quantized) and an optional bias [out].
type Linear struct {
	W, B    *core.Tensor
	In, Out int
}

// LoadLinear reads name.weight [out, in] and, when withBias, name.bias [out].
func LoadLinear(l *core.Loader, name string, out, in int, withBias bool) Linear {
	lin := Linear{W: l.Linear(name+".weight", out, in), In: in, Out: out}
	if withBias {
		lin.B = l.Tensor(name+".bias", out)
	}
	return lin
}

// Apply is x @ W^T + b for x [..., In].
func (lin Linear) Apply(o *core.Ops, x *core.Tensor) *core.Tensor { return o.Linear(x, lin.W, lin.B) }

// LayerNorm is nn.LayerNorm(C, eps): with its affine parameters (W [C], B [C] or nil) or without
// (elementwise_affine=False, W nil).
type LayerNorm struct {
	W, B *core.Tensor
	Eps  float32
}

// LoadLayerNorm reads name.weight and name.bias [c].
func LoadLayerNorm(l *core.Loader, name string, c int, eps float32) LayerNorm {
	return LayerNorm{W: l.Tensor(name+".weight", c), B: l.Tensor(name+".bias", c), Eps: eps}
}

// Apply normalises x over its last dimension.
func (n LayerNorm) Apply(o *core.Ops, x *core.Tensor) *core.Tensor {
	if n.W == nil {
		return o.LayerNorm(x, n.Eps)
	}
	return o.LayerNormAffine(x, n.W, n.B, n.Eps)
}

// Activation is the nonlinearity of an MLP.
type Activation int

const (
	GELUExact Activation = iota // nn.GELU(): 0.5*x*(1 + erf(x/sqrt 2))
	GELUTanh                    // nn.GELU(approximate='tanh')
	SiLU                        // nn.SiLU()
)

// Apply runs the activation on x.
func (a Activation) Apply(o *core.Ops, x *core.Tensor) *core.Tensor {
	switch a {
	case GELUTanh:
		return o.GELUTanh(x)
	case SiLU:
		return o.SiLU(x)
	}
	return o.GELU(x)
}

// MLP is fc2(act(fc1(x))).
type MLP struct {
	FC1, FC2 Linear
	Act      Activation
}

// Apply runs the MLP on x [..., In].
func (m MLP) Apply(o *core.Ops, x *core.Tensor) *core.Tensor {
	var h *core.Tensor
	if m.Act == GELUTanh {
		h = o.LinearGELU(x, m.FC1.W, m.FC1.B) // fused where the backend fuses it
	} else {
		h1 := m.FC1.Apply(o, x)
		h = m.Act.Apply(o, h1)
		o.Free(h1)
	}
	y := m.FC2.Apply(o, h)
	o.Free(h)
	return y
}

// PreNormConfig is the shape of a stack of pre-LN transformer blocks (timm's vision_transformer.Block,
// GPT-2's Block): x += attn(norm1(x)); x += mlp(norm2(x)), with affine LayerNorms, a fused qkv Linear
// with bias, softmax attention scaled by head_dim^-0.5 and an MLP.
type PreNormConfig struct {
	Depth, C, Heads, FFN int
	Eps                  float32
	Act                  Activation
}

// PreNormKeys are a block's key names under its prefix (the timm names by default, TimmKeys).
type PreNormKeys struct{ Norm1, QKV, Proj, Norm2, FC1, FC2 string }

// TimmKeys is timm's Block layout: norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2.
var TimmKeys = PreNormKeys{Norm1: "norm1", QKV: "attn.qkv", Proj: "attn.proj", Norm2: "norm2", FC1: "mlp.fc1", FC2: "mlp.fc2"}

// PreNormBlock is one block's weights.
type PreNormBlock struct {
	Norm1, Norm2 LayerNorm
	QKV, Proj    Linear
	MLP          MLP
}

// PreNormStack is Depth blocks read from prefix.N.* (prefix "encoder_blocks" reads
// encoder_blocks.0.norm1.weight, ...). It is read-only after loading.
type PreNormStack struct {
	Cfg    PreNormConfig
	Blocks []PreNormBlock
}

// InferPreNorm reads the depth, width and MLP width of the blocks under prefix from the checkpoint;
// heads (which no tensor says) is given; 0 means C/64, the head width of every official ViT-style model.
func InferPreNorm(src core.WeightSource, prefix string, k PreNormKeys, heads int) (PreNormConfig, error) {
	cfg := PreNormConfig{Heads: heads, Eps: 1e-6, Act: GELUExact}
	cfg.Depth = CountBlocks(src, prefix)
	if cfg.Depth == 0 {
		name := fmt.Sprintf("%s.0.%s.weight", prefix, k.QKV)
		return cfg, &core.WeightError{Tensor: name, Msg: "missing from checkpoint: no transformer blocks"}
	}
	name := fmt.Sprintf("%s.0.%s.weight", prefix, k.QKV)
	qs, ok := src.Shape(name)
	if !ok {
		return cfg, &core.WeightError{Tensor: name, Msg: "missing from checkpoint"}
	}
	if len(qs) != 2 || qs[0] != 3*qs[1] || qs[1] < 1 {
		return cfg, &core.WeightError{Tensor: name, Msg: fmt.Sprintf("shape %v, want [3C, C]", qs)}
	}
	cfg.C = qs[1]
	name = fmt.Sprintf("%s.0.%s.weight", prefix, k.FC1)
	fs, ok := src.Shape(name)
	if !ok || len(fs) != 2 || fs[1] != cfg.C || fs[0] < 1 {
		return cfg, &core.WeightError{Tensor: name, Msg: fmt.Sprintf("shape %v, want [hidden, %d]", fs, cfg.C)}
	}
	cfg.FFN = fs[0]
	if cfg.Heads == 0 {
		cfg.Heads = max(1, cfg.C/64)
	}
	if cfg.Heads < 1 || cfg.C%cfg.Heads != 0 {
		return cfg, fmt.Errorf("%s: width %d is not divisible into %d heads", prefix, cfg.C, cfg.Heads)
	}
	return cfg, nil
}

// LoadPreNormStack reads the blocks prefix.0 .. prefix.(Depth-1).
func LoadPreNormStack(w *core.Weights, prefix string, k PreNormKeys, c PreNormConfig) (*PreNormStack, error) {
	s := &PreNormStack{Cfg: c}
	l := core.NewLoader(w)
	for i := range c.Depth {
		p := fmt.Sprintf("%s.%d.", prefix, i)
		s.Blocks = append(s.Blocks, PreNormBlock{
			Norm1: LoadLayerNorm(l, p+k.Norm1, c.C, c.Eps),
			QKV:   LoadLinear(l, p+k.QKV, 3*c.C, c.C, true),
			Proj:  LoadLinear(l, p+k.Proj, c.C, c.C, true),
			Norm2: LoadLayerNorm(l, p+k.Norm2, c.C, c.Eps),
			MLP: MLP{FC1: LoadLinear(l, p+k.FC1, c.FFN, c.C, true), FC2: LoadLinear(l, p+k.FC2, c.C, c.FFN, true),
				Act: c.Act},
		})
	}
	if l.Err() != nil {
		return nil, l.Err()
	}
	return s, nil
}

// Forward runs every block on x [B, L, C] with bidirectional attention over x's own tokens (mask nil)
// or an additive mask [L, L] (e.g. causal). tap names intermediate tensors (tap + "N.out").
func (s *PreNormStack) Forward(o *core.Ops, x *core.Tensor, mask *core.Tensor, tap string) *core.Tensor {
	for i := range s.Blocks {
		y := s.Block(o, i, x, mask)
		if i > 0 {
			o.Free(x)
		}
		x = y
		o.Tap(fmt.Sprintf("%s%d.out", tap, i), x)
	}
	return x
}

// Block runs block i on x [B, L, C] (x is not freed).
func (s *PreNormStack) Block(o *core.Ops, i int, x *core.Tensor, mask *core.Tensor) *core.Tensor {
	if x == nil {
		o.Fail("block", fmt.Errorf("nil input"))
		return nil
	}
	b := &s.Blocks[i]
	C := s.Cfg.C
	h := b.Norm1.Apply(o, x)
	qkv := b.QKV.Apply(o, h)
	o.Free(h)
	q, k, v := o.SliceLast(qkv, 0, C), o.SliceLast(qkv, C, C), o.SliceLast(qkv, 2*C, C)
	o.Free(qkv)
	att := o.Attention(q, k, v, s.Cfg.Heads, float32(1/math.Sqrt(float64(C/s.Cfg.Heads))), mask)
	o.Free(q, k, v)
	ao := b.Proj.Apply(o, att)
	o.Free(att)
	x1 := o.Add(x, ao)
	o.Free(ao)
	h = b.Norm2.Apply(o, x1)
	f := b.MLP.Apply(o, h)
	o.Free(h)
	x2 := o.Add(x1, f)
	o.Free(x1, f)
	return x2
}
