// Package nn holds the transformer layers that model families compose instead of copying: VAR's and
// FlexVAR's AdaLN self-attention blocks (models/basic_var.py AdaLNSelfAttn, the same module and key
// layout in both), their AdaLN head norm and the key/value cache. The ops themselves are core.Backend's;
// this package only fixes their order, so every family that uses a layer rounds exactly as the others.
package nn

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

// AdaLNConfig is the shape of a stack of AdaLN blocks, read from the checkpoint (InferAdaLN).
type AdaLNConfig struct {
	Depth       int  // number of blocks
	C           int  // width (embed_dim)
	Heads       int  // attention heads; head_dim = C / Heads
	FFN         int  // hidden width of the MLP (mlp_ratio * C)
	SharedAdaLN bool // blocks share one AdaLN linear plus a per-block ada_gss (VAR-d36)
	L2NormAttn  bool // attn_l2_norm: cosine attention with a learned per-head scale
	NormEps     float32
}

// HeadDim is C / Heads.
func (c AdaLNConfig) HeadDim() int { return c.C / c.Heads }

// HeadsUnknownError is the error of a model whose head count no tensor says (attention without l2-norm,
// a width that is not a multiple of 64) when none was given: front ends point at their own option.
type HeadsUnknownError struct{ Width int }

func (e *HeadsUnknownError) Error() string {
	return fmt.Sprintf("cannot infer the head count of a %d-wide model without l2-norm attention: give it explicitly", e.Width)
}

// InferAdaLN reads the block stack's shape from blocks.N.* of a checkpoint whose width is c. heads is
// needed only without l2-norm attention (no tensor says it then); 0 means C/64 (the official
// width = 64*depth, heads = depth convention).
func InferAdaLN(src core.WeightSource, c, heads int) (AdaLNConfig, error) {
	cfg := AdaLNConfig{C: c, NormEps: 1e-6}
	// The depth counts any block key and l2-norm attention is any block's scale_mul_1H11, so that a
	// checkpoint missing one of a block's tensors is reported by name (tensortable.Table.Check) rather
	// than read as a shallower or another kind of model.
	cfg.Depth = CountBlocks(src, "blocks")
	scaleMul := ""
	for i := range cfg.Depth {
		if name := fmt.Sprintf("blocks.%d.attn.scale_mul_1H11", i); hasShape(src, name) {
			scaleMul = name
			break
		}
	}
	if cfg.Depth == 0 {
		return cfg, &core.WeightError{Tensor: "blocks.0.attn.mat_qkv.weight", Msg: "missing from checkpoint: no transformer blocks"}
	}
	cfg.SharedAdaLN = hasShape(src, "blocks.0.ada_gss") || hasShape(src, "shared_ada_lin.1.weight")
	if scaleMul != "" {
		sm, _ := src.Shape(scaleMul)
		cfg.L2NormAttn = true
		if len(sm) != 4 {
			return cfg, &core.WeightError{Tensor: scaleMul, Msg: fmt.Sprintf("shape %v, want [1, H, 1, 1]", sm)}
		}
		cfg.Heads = sm[1]
		if heads != 0 && heads != cfg.Heads {
			return cfg, fmt.Errorf("heads %d given, but %s says %d", heads, scaleMul, cfg.Heads)
		}
	} else {
		switch {
		case heads > 0:
			cfg.Heads = heads
		case c%64 == 0:
			cfg.Heads = c / 64
		default:
			return cfg, &HeadsUnknownError{Width: c}
		}
	}
	if cfg.Heads <= 0 || c%cfg.Heads != 0 {
		return cfg, fmt.Errorf("width %d is not divisible into %d heads", c, cfg.Heads)
	}
	f1, ok := src.Shape("blocks.0.ffn.fc1.weight")
	if !ok {
		return cfg, &core.WeightError{Tensor: "blocks.0.ffn.fc1.weight", Msg: "missing from checkpoint"}
	}
	if len(f1) != 2 {
		return cfg, &core.WeightError{Tensor: "blocks.0.ffn.fc1.weight", Msg: fmt.Sprintf("shape %v, want rank 2", f1)}
	}
	cfg.FFN = f1[0]
	return cfg, nil
}

// adaLNBlock is one AdaLNSelfAttn: the AdaLN linear (own, or the shared one with this block's ada_gss
// folded into the bias), attention and MLP weights.
type adaLNBlock struct {
	adaW, adaB   *core.Tensor // [6C, C], [6C]: chunks gamma1, gamma2, scale1, scale2, shift1, shift2
	qkvW, qkvB   *core.Tensor // [3C, C], [3C] = cat(q_bias, 0, v_bias)
	scaleMul     *core.Tensor // [H]: exp(min(scale_mul_1H11, log 100)); nil without l2-norm attention
	projW, projB *core.Tensor
	fc1W, fc1B   *core.Tensor
	fc2W, fc2B   *core.Tensor
}

// AdaLNStack is the blocks of a VAR-style transformer and its head norm (head_nm): everything between
// the input embedding and the vocabulary projection. It is read-only after loading.
type AdaLNStack struct {
	Cfg       AdaLNConfig
	blocks    []adaLNBlock
	headAdaW  *core.Tensor // [2C, C]: chunks scale, shift
	headAdaB  *core.Tensor
	attnScale float32
	// shared_ada_lin without any block's ada_gss (nil unless SharedAdaLN): only for TapCond.
	sharedW, sharedB *core.Tensor
}

// LoadAdaLNStack reads blocks.N.*, shared_ada_lin (when shared) and head_nm.ada_lin from w. Linear
// weights may stay quantized (core.Weights.LinearWeight).
func LoadAdaLNStack(w *core.Weights, c AdaLNConfig) (*AdaLNStack, error) {
	s := &AdaLNStack{Cfg: c}
	C := c.C
	l := core.NewLoader(w)
	get, linear, host, upload := l.Tensor, l.Linear, l.Host, l.Upload
	var sharedW *core.Tensor
	var sharedB core.HostTensor
	if c.SharedAdaLN {
		sharedW = linear("shared_ada_lin.1.weight", 6*C, C)
		sharedB = host("shared_ada_lin.1.bias", 6*C)
		s.sharedW, s.sharedB = sharedW, upload(sharedB)
	}
	if c.L2NormAttn {
		s.attnScale = 1
	} else {
		s.attnScale = float32(0.25 / math.Sqrt(float64(c.HeadDim())))
	}
	maxScaleMul := float32(math.Log(100))
	for i := 0; i < c.Depth; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		var b adaLNBlock
		if c.SharedAdaLN {
			// ada_gss + shared_ada_lin(cond): fold ada_gss [1, 1, 6, C] into the shared linear's bias.
			gss := host(p+"ada_gss", 1, 1, 6, C)
			if l.Err() != nil {
				return nil, l.Err()
			}
			bias := make([]float32, 6*C)
			for j := range bias {
				bias[j] = sharedB.Data[j] + gss.Data[j]
			}
			b.adaW = sharedW
			b.adaB = upload(core.HostTensor{Shape: core.Shape{6 * C}, Data: bias})
		} else {
			b.adaW = linear(p+"ada_lin.1.weight", 6*C, C)
			b.adaB = get(p+"ada_lin.1.bias", 6*C)
		}
		qb := host(p+"attn.q_bias", C)
		vb := host(p+"attn.v_bias", C)
		host(p+"attn.zero_k_bias", C) // a buffer of zeros: checked for shape, never trusted
		if l.Err() != nil {
			return nil, l.Err()
		}
		qkvB := make([]float32, 3*C)
		copy(qkvB, qb.Data)
		copy(qkvB[2*C:], vb.Data)
		b.qkvB = upload(core.HostTensor{Shape: core.Shape{3 * C}, Data: qkvB})
		b.qkvW = linear(p+"attn.mat_qkv.weight", 3*C, C)
		if c.L2NormAttn {
			sm := host(p+"attn.scale_mul_1H11", 1, c.Heads, 1, 1)
			if l.Err() != nil {
				return nil, l.Err()
			}
			sc := make([]float32, c.Heads)
			for h := range sc {
				sc[h] = float32(math.Exp(float64(min(sm.Data[h], maxScaleMul))))
			}
			b.scaleMul = upload(core.HostTensor{Shape: core.Shape{c.Heads}, Data: sc})
		}
		b.projW = linear(p+"attn.proj.weight", C, C)
		b.projB = get(p+"attn.proj.bias", C)
		b.fc1W = linear(p+"ffn.fc1.weight", c.FFN, C)
		b.fc1B = get(p+"ffn.fc1.bias", c.FFN)
		b.fc2W = linear(p+"ffn.fc2.weight", C, c.FFN)
		b.fc2B = get(p+"ffn.fc2.bias", C)
		s.blocks = append(s.blocks, b)
	}
	s.headAdaW = linear("head_nm.ada_lin.1.weight", 2*C, C)
	s.headAdaB = get("head_nm.ada_lin.1.bias", 2*C)
	if l.Err() != nil {
		return nil, l.Err()
	}
	return s, nil
}

// Depth is the number of blocks.
func (s *AdaLNStack) Depth() int { return len(s.blocks) }

// AdaLN holds one block's six modulation rows for the current batch: each [B, C].
type AdaLN struct{ Gamma1, Gamma2, Scale1, Scale2, Shift1, Shift2 *core.Tensor }

// Modulations are the AdaLN rows of every block and of the head for one batch of conditions. They stay
// fixed over a whole generation.
type Modulations struct {
	Blocks               []AdaLN
	HeadScale, HeadShift *core.Tensor // [B, C]
}

// Free releases the rows.
func (m *Modulations) Free(o *core.Ops) {
	for _, a := range m.Blocks {
		o.Free(a.Gamma1, a.Gamma2, a.Scale1, a.Scale2, a.Shift1, a.Shift2)
	}
	o.Free(m.HeadScale, m.HeadShift)
	m.Blocks, m.HeadScale, m.HeadShift = nil, nil, nil
}

// Condition computes, for the condition vectors cond [B, C] (class embeddings), the AdaLN modulations of
// every block and of the head: ada_lin = Linear(SiLU(cond)).
func (s *AdaLNStack) Condition(o *core.Ops, cond *core.Tensor) *Modulations {
	C := s.Cfg.C
	m := &Modulations{}
	sc := o.SiLU(cond)
	for _, b := range s.blocks {
		a := o.Linear(sc, b.adaW, b.adaB) // [B, 6C]
		m.Blocks = append(m.Blocks, AdaLN{
			Gamma1: o.SliceLast(a, 0, C), Gamma2: o.SliceLast(a, C, C),
			Scale1: o.SliceLast(a, 2*C, C), Scale2: o.SliceLast(a, 3*C, C),
			Shift1: o.SliceLast(a, 4*C, C), Shift2: o.SliceLast(a, 5*C, C),
		})
		o.Free(a)
	}
	h := o.Linear(sc, s.headAdaW, s.headAdaB) // [B, 2C]
	m.HeadScale, m.HeadShift = o.SliceLast(h, 0, C), o.SliceLast(h, C, C)
	o.Free(sc, h)
	return m
}

// TapCond reports under name what the official blocks receive as cond_BD_or_gss: cond [B, C] itself,
// or with shared AdaLN shared_ada_lin(cond) [B, 6C] (the blocks add their ada_gss to it; Condition has
// it folded in), computed only when someone taps.
func (s *AdaLNStack) TapCond(o *core.Ops, name string, cond *core.Tensor) {
	if !s.Cfg.SharedAdaLN {
		o.Tap(name, cond)
		return
	}
	if o.OnTap == nil {
		return
	}
	sc := o.SiLU(cond)
	g := o.Linear(sc, s.sharedW, s.sharedB)
	o.Tap(name, g)
	o.Free(sc, g)
}

// Block runs block i on x [B, l, C]. With kv, this step's keys and values are written to the cache after
// its kv.N rows and attention sees all cached tokens (no mask); without, attention uses mask [l, l]
// (additive, or nil for none) over x's own tokens. The caller advances kv.N once every block has run.
// tap names the intermediate tensors (tap + "attn_out", "ffn_out").
func (s *AdaLNStack) Block(o *core.Ops, i int, x *core.Tensor, a AdaLN, kv *KVCache, mask *core.Tensor, tap string) *core.Tensor {
	if x == nil { // an earlier op failed: its error is recorded (Fail keeps the first)
		o.Fail("block", fmt.Errorf("nil input"))
		return nil
	}
	b := &s.blocks[i]
	c := s.Cfg
	eps := c.NormEps

	ln := o.LayerNorm(x, eps)
	h := o.Modulate(ln, a.Scale1, a.Shift1)
	o.Free(ln)
	qkv := o.Linear(h, b.qkvW, b.qkvB) // [B, l, 3C]
	o.Free(h)
	var att *core.Tensor
	if kv != nil {
		// Slices, per-head normalisation and the cache writes in one op where the backend fuses them.
		q := o.QKVToCache(qkv, c.Heads, c.L2NormAttn, b.scaleMul, kv.K[i], kv.V[i], kv.N)
		o.Free(qkv)
		att = o.AttentionPrefix(q, kv.K[i], kv.V[i], kv.N+x.Dim(1), c.Heads, s.attnScale)
		o.Free(q)
	} else {
		q, k, v := o.SliceLast(qkv, 0, c.C), o.SliceLast(qkv, c.C, c.C), o.SliceLast(qkv, 2*c.C, c.C)
		o.Free(qkv)
		if c.L2NormAttn {
			qn, kn := o.NormalizeHeads(q, c.Heads, b.scaleMul), o.NormalizeHeads(k, c.Heads, nil)
			o.Free(q, k)
			q, k = qn, kn
		}
		att = o.Attention(q, k, v, c.Heads, s.attnScale, mask)
		o.Free(q, k, v)
	}
	ao := o.Linear(att, b.projW, b.projB)
	o.Free(att)
	o.Tap(tap+"attn_out", ao)
	x1 := o.AddMulRows(x, ao, a.Gamma1)
	o.Free(ao)

	ln = o.LayerNorm(x1, eps)
	h = o.Modulate(ln, a.Scale2, a.Shift2)
	o.Free(ln)
	g := o.LinearGELU(h, b.fc1W, b.fc1B)
	o.Free(h)
	f2 := o.Linear(g, b.fc2W, b.fc2B)
	o.Free(g)
	o.Tap(tap+"ffn_out", f2)
	x2 := o.AddMulRows(x1, f2, a.Gamma2)
	o.Free(x1, f2)
	return x2
}

// Forward runs every block in turn on x [B, l, C], with kv and mask as for Block, and returns the last
// block's output; x and each block's input are freed. Block i runs in scope scope+"blocks.i" and taps
// its output as tap+"block{i}.out" (its inner tensors under tap+"block{i}.").
func (s *AdaLNStack) Forward(o *core.Ops, x *core.Tensor, mod *Modulations, kv *KVCache, mask *core.Tensor, scope, tap string) *core.Tensor {
	for i := range mod.Blocks {
		prev := o.SetScope(fmt.Sprintf("%sblocks.%d", scope, i))
		blockTap := fmt.Sprintf("%sblock%d.", tap, i)
		x2 := s.Block(o, i, x, mod.Blocks[i], kv, mask, blockTap)
		o.SetScope(prev)
		o.Free(x)
		x = x2
		o.Tap(blockTap+"out", x)
	}
	return x
}

// BlockCausalMask is attn_bias_for_masking for tokens whose steps (VAR's scales, FlexVAR's schedule
// steps) are stepOf_L: 0 where the key's step <= the query's, -Inf elsewhere, [L, L]. A token sees every
// token of its own and earlier steps.
func BlockCausalMask(stepOf_L []int) core.HostTensor {
	L := len(stepOf_L)
	d := make([]float32, L*L)
	ninf := float32(math.Inf(-1))
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			if stepOf_L[j] > stepOf_L[i] {
				d[i*L+j] = ninf
			}
		}
	}
	return core.HostTensor{Shape: core.Shape{L, L}, Data: d}
}

// HeadNorm is head_nm(x, cond): LayerNorm without affine parameters, then the head's own modulation.
func (s *AdaLNStack) HeadNorm(o *core.Ops, x *core.Tensor, m *Modulations) *core.Tensor {
	ln := o.LayerNorm(x, s.Cfg.NormEps)
	h := o.Modulate(ln, m.HeadScale, m.HeadShift)
	o.Free(ln)
	return h
}
