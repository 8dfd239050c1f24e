package rq

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// block is one AttentionBlock (rqtransformer/attentions.py): x += proj(attn(ln1(x))); x += mlp(ln2(x)),
// with separate query, key and value Linears and exact GELU.
type block struct {
	ln1, ln2             nn.LayerNorm
	query, key, value, p nn.Linear
	mlp                  nn.MLP
}

// stack is an AttentionStack: causal self-attention blocks. Read-only after loading.
type stack struct {
	cfg    StackConfig
	c      int
	scale  float32 // 1/sqrt(head_dim): the official code scales k by it before q @ k^T
	blocks []block
}

func loadStack(l *core.Loader, prefix string, c int, s StackConfig) *stack {
	st := &stack{cfg: s, c: c, scale: float32(1 / math.Sqrt(float64(c/s.Heads)))}
	for i := range s.Layers {
		p := fmt.Sprintf("%s.blocks.%d.", prefix, i)
		st.blocks = append(st.blocks, block{
			ln1:   nn.LoadLayerNorm(l, p+"ln1", c, LayerNormEps),
			ln2:   nn.LoadLayerNorm(l, p+"ln2", c, LayerNormEps),
			query: nn.LoadLinear(l, p+"attn.query", c, c, s.AttnBias),
			key:   nn.LoadLinear(l, p+"attn.key", c, c, s.AttnBias),
			value: nn.LoadLinear(l, p+"attn.value", c, c, s.AttnBias),
			p:     nn.LoadLinear(l, p+"attn.proj", c, c, s.AttnBias),
			mlp: nn.MLP{FC1: nn.LoadLinear(l, p+"mlp.0", s.FFN, c, s.MLPBias), FC2: nn.LoadLinear(l, p+"mlp.2", c, s.FFN, s.MLPBias),
				Act: nn.GELUExact},
		})
	}
	return st
}

// causalMask is the additive [n, n] mask of torch.tril: -Inf above the diagonal.
func causalMask(o *core.Ops, n int) *core.Tensor {
	m := make([]float32, n*n)
	ninf := float32(math.Inf(-1))
	for i := range n {
		for j := i + 1; j < n; j++ {
			m[i*n+j] = ninf
		}
	}
	return o.Upload(core.HostTensor{Shape: core.Shape{n, n}, Data: m})
}

// forward runs every block on x [B, L, C] with a causal mask (the teacher-forced forward()). x is not
// freed.
func (s *stack) forward(o *core.Ops, x *core.Tensor) *core.Tensor {
	if x == nil {
		return nil
	}
	mask := causalMask(o, x.Dim(1))
	defer o.Free(mask)
	cur := x
	for i := range s.blocks {
		y := s.block(o, i, cur, nil, mask)
		if cur != x {
			o.Free(cur)
		}
		cur = y
	}
	return cur
}

// step is cached_forward: x [B, l, C] are the next l tokens. Their keys and values are written into the
// caches after kv.N rows and attention sees every cached token. More than one token (a prefill) needs an
// empty cache: the tokens then attend to each other causally. kv.N advances by l. x is not freed.
func (s *stack) step(o *core.Ops, x *core.Tensor, kv *nn.KVCache) *core.Tensor {
	if x == nil {
		return nil
	}
	var mask *core.Tensor
	if l := x.Dim(1); l > 1 {
		if kv.N != 0 {
			o.Fail("rq transformer", fmt.Errorf("a step of %d tokens after %d cached ones: only a prefill of an empty cache takes several", l, kv.N))
			return nil
		}
		mask = causalMask(o, l)
		defer o.Free(mask)
	}
	cur := x
	for i := range s.blocks {
		y := s.block(o, i, cur, kv, mask)
		if cur != x {
			o.Free(cur)
		}
		cur = y
	}
	kv.N += x.Dim(1)
	return cur
}

// block runs block i on x [B, l, C]. Without kv it is attention over x's own tokens under mask; with kv
// this step's keys and values go into the caches (rows kv.N..kv.N+l) and attention reads the first kv.N+l
// rows (a prefill, kv.N == 0 and l > 1, attends over its own tokens under the causal mask instead, which
// is the same).
func (s *stack) block(o *core.Ops, i int, x *core.Tensor, kv *nn.KVCache, mask *core.Tensor) *core.Tensor {
	if x == nil {
		return nil
	}
	b := &s.blocks[i]
	h := b.ln1.Apply(o, x)
	q, k, v := b.query.Apply(o, h), b.key.Apply(o, h), b.value.Apply(o, h)
	o.Free(h)
	var att *core.Tensor
	switch {
	case kv == nil:
		att = o.Attention(q, k, v, s.cfg.Heads, s.scale, mask)
	default:
		o.WriteRows(kv.K[i], k, kv.N)
		o.WriteRows(kv.V[i], v, kv.N)
		if mask != nil {
			att = o.Attention(q, k, v, s.cfg.Heads, s.scale, mask)
		} else {
			att = o.AttentionPrefix(q, kv.K[i], kv.V[i], kv.N+x.Dim(1), s.cfg.Heads, s.scale)
		}
	}
	o.Free(q, k, v)
	a := b.p.Apply(o, att)
	o.Free(att)
	x1 := o.Add(x, a)
	o.Free(a)
	h = b.ln2.Apply(o, x1)
	f := b.mlp.Apply(o, h)
	o.Free(h)
	x2 := o.Add(x1, f)
	o.Free(x1, f)
	return x2
}

// Model is a loaded RQ-Transformer (rqtransformer/transformers.py RQTransformer). It embeds codes through
// the RQ-VAE's codebook (input_emb_vqvae, head_emb_vqvae), so its methods take the VAE. Read-only after
// Load and safe to share between goroutines, each with its own core.Ops.
type Model struct {
	cfg        Config
	condEmb    *core.Tensor // [CondRows, C]
	posCond    *core.Tensor // [C]
	posHW      *core.Tensor // [H*W, C]
	posD       *core.Tensor // [D, C]
	inputMLP   nn.Linear
	headMLP    nn.Linear
	body, head *stack
	clsNorm    nn.LayerNorm
	classifier nn.Linear
}

// Load reads the model from w with the architecture cfg (InferConfig, or config.yaml checked against the
// tensors). Every tensor must be used: an unknown key is a variant this code does not implement.
func Load(w *core.Weights, cfg Config) (*Model, error) {
	m := &Model{cfg: cfg}
	if err := m.load(w); err != nil {
		return nil, fmt.Errorf("rq transformer: %w", err)
	}
	if err := w.CheckAllUsed("an RQ-Transformer checkpoint"); err != nil {
		return nil, fmt.Errorf("rq transformer: %w", err)
	}
	return m, nil
}

func (m *Model) load(w *core.Weights) error {
	c := m.cfg
	if c.Body.Heads < 1 || c.C%c.Body.Heads != 0 || c.Head.Heads < 1 || c.C%c.Head.Heads != 0 {
		return fmt.Errorf("width %d is not divisible into %d (body) and %d (head) heads", c.C, c.Body.Heads, c.Head.Heads)
	}
	l := core.NewLoader(w)
	C, L := c.C, c.Positions()
	m.condEmb = l.Tensor("cond_emb.weight", c.CondRows, C)
	m.posCond = l.Tensor("pos_emb_cond", 1, 1, C)
	m.posHW = l.Tensor("pos_emb_hw", 1, L, C)
	m.posD = l.Tensor("pos_emb_d", 1, c.D, C)
	m.inputMLP = nn.LoadLinear(l, "input_mlp", C, c.InEmbed, true)
	m.headMLP = nn.LoadLinear(l, "head_mlp", C, c.InEmbed, true)
	m.body = loadStack(l, "body_transformer", C, c.Body)
	m.head = loadStack(l, "head_transformer", C, c.Head)
	m.clsNorm = nn.LoadLayerNorm(l, "classifier.layer_norm", C, LayerNormEps)
	m.classifier = nn.LoadLinear(l, "classifier.linear", c.V, C, true)
	if l.Err() != nil {
		return l.Err()
	}
	var err error
	if m.posCond, err = core.Reshape(m.posCond, C); err != nil {
		return err
	}
	if m.posHW, err = core.Reshape(m.posHW, L, C); err != nil {
		return err
	}
	if m.posD, err = core.Reshape(m.posD, c.D, C); err != nil {
		return err
	}
	return nil
}

// Config returns the architecture.
func (m *Model) Config() Config { return m.cfg }

// checkVAE reports whether v's codes are the ones the model predicts.
func (m *Model) checkVAE(v *VAE) error {
	c, vc := m.cfg, v.cfg
	switch {
	case c.V != vc.NEmbed:
		return fmt.Errorf("rq: the transformer predicts %d codes (classifier.linear.weight), the RQ-VAE's codebook has %d (quantizer.codebooks.0.weight)", c.V, vc.NEmbed)
	case c.InEmbed != vc.Embed:
		return fmt.Errorf("rq: the transformer embeds %d-wide codes (input_mlp.weight), the RQ-VAE's are %d wide (quantizer.codebooks.0.weight)", c.InEmbed, vc.Embed)
	case c.D != vc.Depth:
		return fmt.Errorf("rq: the transformer predicts %d depths (pos_emb_d), the RQ-VAE quantizes %d", c.D, vc.Depth)
	}
	return nil
}

// checkLabels reports labels outside the condition table.
func (m *Model) checkLabels(labels []int) error {
	if len(labels) == 0 {
		return fmt.Errorf("rq: no labels")
	}
	for _, l := range labels {
		if l < 0 || l >= m.cfg.CondRows {
			if m.cfg.CondRows == 1 {
				return fmt.Errorf("rq: class %d: the model is unconditional (label 0 only)", l)
			}
			return fmt.Errorf("rq: class %d outside 0..%d", l, m.cfg.CondRows-1)
		}
	}
	return nil
}

// condTokens is cond_emb(cond) + pos_emb_cond: [B, C].
func (m *Model) condTokens(o *core.Ops, labels []int) *core.Tensor {
	e := o.Embedding(m.condEmb, labels)
	x := o.Add(e, m.posCond)
	o.Free(e)
	return x
}

// inputSums is sum_d input_mlp(e_d) over the depths of n positions' code vectors emb [n, D*Embed]: the
// Linear runs per depth (its bias is added D times), then the D results are added in depth order. [n, C].
func (m *Model) inputSums(o *core.Ops, emb *core.Tensor, n int) *core.Tensor {
	D, E, C := m.cfg.D, m.cfg.InEmbed, m.cfg.C
	per := m.inputMLP.Apply(o, o.Reshape(emb, n*D, E)) // [n*D, C]
	flat := o.Reshape(per, n, D*C)
	sum := o.SliceLast(flat, 0, C)
	for d := 1; d < D; d++ {
		e := o.SliceLast(flat, d*C, C)
		s := o.Add(sum, e)
		o.Free(sum, e)
		sum = s
	}
	o.Free(per)
	return sum
}

// depthSums is the running sum over depths of n positions' code vectors emb [n, D*Embed] (torch.cumsum
// along depth): D tensors [n, Embed], the d-th the sum of depths 0..d.
func (m *Model) depthSums(o *core.Ops, emb *core.Tensor, upto int) []*core.Tensor {
	E := m.cfg.InEmbed
	out := []*core.Tensor{o.SliceLast(emb, 0, E)}
	for d := 1; d < upto; d++ {
		e := o.SliceLast(emb, d*E, E)
		out = append(out, o.Add(out[d-1], e))
		o.Free(e)
	}
	return out
}

// Forward is the teacher-forced forward(codes, vae, cond): logits [B, H, W, D, V], where [b, h, w, d]
// predicts codes[b, h, w, d] from the earlier positions and the shallower depths. Taps: rq.tf.body_in,
// rq.tf.body_out, rq.tf.head_in, rq.tf.head_out.
func (m *Model) Forward(o *core.Ops, v *VAE, c Codes, labels []int) *core.Tensor {
	cfg := m.cfg
	if err := m.checkVAE(v); err != nil {
		o.Fail("rq forward", err)
		return nil
	}
	if err := m.checkLabels(labels); err != nil {
		o.Fail("rq forward", err)
		return nil
	}
	if c.B != len(labels) || c.H*c.W != cfg.Positions() || c.D != cfg.D {
		o.Fail("rq forward", fmt.Errorf("codes (%d, %d, %d, %d) for %d labels, want (B, %d, %d, %d)", c.B, c.H, c.W, c.D, len(labels), cfg.H, cfg.W, cfg.D))
		return nil
	}
	if err := c.check(cfg.V); err != nil {
		o.Fail("rq forward", err)
		return nil
	}
	B, L, D, C, E := c.B, cfg.Positions(), cfg.D, cfg.C, cfg.InEmbed
	emb := o.Reshape(v.CodeEmbeddings(o, c), B*L, D*E) // [B*L, D*E]

	// Body input: [cond token, (sum_d input_mlp(e_d) + pos_emb_hw)[:-1]].
	xs := o.Reshape(m.inputSums(o, emb, B*L), B, L, C)
	xp := o.Add(xs, m.posHW)
	o.Free(xs)
	var body *core.Tensor
	cond := o.Reshape(m.condTokens(o, labels), B, 1, C)
	if L > 1 {
		ids := make([]int, 0, B*(L-1))
		for b := range B {
			for i := range L - 1 {
				ids = append(ids, b*L+i)
			}
		}
		shifted := o.Reshape(o.Embedding(o.Reshape(xp, B*L, C), ids), B, L-1, C)
		body = o.Concat(1, cond, shifted)
		o.Free(cond, shifted)
	} else {
		body = cond
	}
	o.Free(xp)
	o.Tap("rq.tf.body_in", body)
	ctx := m.body.forward(o, body)
	o.Free(body)
	o.Tap("rq.tf.body_out", ctx)

	// Head input per position: [body_out, head_mlp(cumsum_d e)[:-1]] + pos_emb_d.
	parts := []*core.Tensor{o.Reshape(ctx, B*L, 1, C)}
	sums := m.depthSums(o, emb, D-1)
	for _, s := range sums {
		parts = append(parts, o.Reshape(m.headMLP.Apply(o, s), B*L, 1, C))
	}
	o.Free(sums...)
	o.Free(emb)
	cat := parts[0]
	if len(parts) > 1 {
		cat = o.Concat(1, parts...)
		o.Free(parts...)
	}
	hin := o.Add(cat, m.posD)
	o.Free(cat)
	o.Tap("rq.tf.head_in", hin)
	hout := m.head.forward(o, hin)
	o.Free(hin)
	o.Tap("rq.tf.head_out", hout)
	logits := m.classify(o, hout)
	o.Free(hout)
	return o.Reshape(logits, B, cfg.H, cfg.W, D, cfg.V)
}

// classify is the classifier: LayerNorm, then the Linear shared by every depth (LogitMask is a no-op with
// one vocabulary size).
func (m *Model) classify(o *core.Ops, x *core.Tensor) *core.Tensor {
	h := m.clsNorm.Apply(o, x)
	y := m.classifier.Apply(o, h)
	o.Free(h)
	return y
}
