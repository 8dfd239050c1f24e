package varmodel

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

// block is one AdaLNSelfAttn: the AdaLN linear (own, or the shared one with this block's ada_gss folded
// into the bias), attention and MLP weights.
type block struct {
	adaW, adaB   *core.Tensor // [6C, C], [6C]: chunks gamma1, gamma2, scale1, scale2, shift1, shift2
	qkvW, qkvB   *core.Tensor // [3C, C], [3C] = cat(q_bias, 0, v_bias)
	scaleMul     *core.Tensor // [H]: exp(min(scale_mul_1H11, log 100)); nil without l2-norm attention
	projW, projB *core.Tensor
	fc1W, fc1B   *core.Tensor
	fc2W, fc2B   *core.Tensor
}

// Model is a loaded VAR transformer. It is read-only after Load and safe to share between goroutines,
// each with its own core.Ops.
type Model struct {
	cfg        Config
	classEmb   *core.Tensor   // [classes+1, C]; row `classes` is the null class
	sosPos     *core.Tensor   // [first_l, C]: pos_start + lvl_embed(0) + pos_1LC[:first_l]
	lvlPos     []*core.Tensor // per scale: [pn^2, C] lvl_embed(level) + pos_1LC rows of that scale
	lvlPosAll  *core.Tensor   // [L, C], for the teacher-forced forward
	wordW      *core.Tensor   // [C, Cvae]
	wordB      *core.Tensor
	blocks     []block
	headAdaW   *core.Tensor // [2C, C]: chunks scale, shift
	headAdaB   *core.Tensor
	headW      *core.Tensor // [V, C]
	headB      *core.Tensor
	attnScale  float32
	beginEnds  [][2]int
	levelOfTok []int
}

// Load reads the transformer from w. See InferConfig for what opt is for. Every tensor of the checkpoint
// must be used: an unknown key means a variant this code does not implement, and is an error.
func Load(w *core.Weights, opt Options) (*Model, error) {
	cfg, err := InferConfig(w.Src, opt)
	if err != nil {
		return nil, fmt.Errorf("var: %w", err)
	}
	m := &Model{cfg: cfg}
	if err := m.load(w); err != nil {
		return nil, fmt.Errorf("var: %w", err)
	}
	if un := w.Unused(); len(un) > 0 {
		return nil, fmt.Errorf("var: %w", &core.WeightError{Tensor: un[0],
			Msg: fmt.Sprintf("unexpected in a VAR checkpoint (%d unknown tensors)", len(un))})
	}
	return m, nil
}

// Config returns the architecture.
func (m *Model) Config() Config { return m.cfg }

func (m *Model) load(w *core.Weights) error {
	c := m.cfg
	C, L := c.C, c.L
	var err error
	get := func(name string, shape ...int) *core.Tensor {
		if err != nil {
			return nil
		}
		var t *core.Tensor
		t, err = w.Tensor(name, shape...)
		return t
	}
	// linear reads a Linear layer's weight, which may stay quantized (core.Weights.LinearWeight).
	linear := func(name string, shape ...int) *core.Tensor {
		if err != nil {
			return nil
		}
		var t *core.Tensor
		t, err = w.LinearWeight(name, shape...)
		return t
	}
	host := func(name string, shape ...int) core.HostTensor {
		if err != nil {
			return core.HostTensor{}
		}
		var h core.HostTensor
		h, err = w.Host(name, shape...)
		return h
	}
	upload := func(h core.HostTensor) *core.Tensor {
		if err != nil {
			return nil
		}
		var t *core.Tensor
		t, err = w.B.Upload(h)
		return t
	}

	// Token layout: scale si owns tokens [begin, end); its level is si.
	m.levelOfTok = make([]int, L)
	pos := 0
	for si, pn := range c.PatchNums {
		m.beginEnds = append(m.beginEnds, [2]int{pos, pos + pn*pn})
		for t := pos; t < pos+pn*pn; t++ {
			m.levelOfTok[t] = si
		}
		pos += pn * pn
	}
	// lvl_1L and attn_bias_for_masking are derived from patch_nums; zero_k_bias is zeros.
	w.MarkUsed("lvl_1L", "attn_bias_for_masking")

	m.classEmb = get("class_emb.weight", c.Classes+1, C)
	m.wordW = linear("word_embed.weight", C, c.Cvae)
	m.wordB = get("word_embed.bias", C)
	posStart := host("pos_start", 1, c.PatchNums[0]*c.PatchNums[0], C)
	pos1LC := host("pos_1LC", 1, L, C)
	lvlEmb := host("lvl_embed.weight", len(c.PatchNums), C)
	if err != nil {
		return err
	}
	// lvl_pos = lvl_embed(lvl_1L) + pos_1LC, computed once on the host.
	lvlPos := make([]float32, L*C)
	for t := 0; t < L; t++ {
		lv := m.levelOfTok[t]
		for j := 0; j < C; j++ {
			lvlPos[t*C+j] = lvlEmb.Data[lv*C+j] + pos1LC.Data[t*C+j]
		}
	}
	firstL := c.PatchNums[0] * c.PatchNums[0]
	sos := make([]float32, firstL*C)
	for i := range sos {
		sos[i] = posStart.Data[i] + lvlPos[i]
	}
	m.sosPos = upload(core.HostTensor{Shape: core.Shape{firstL, C}, Data: sos})
	m.lvlPosAll = upload(core.HostTensor{Shape: core.Shape{L, C}, Data: lvlPos})
	for _, be := range m.beginEnds {
		n := be[1] - be[0]
		m.lvlPos = append(m.lvlPos, upload(core.HostTensor{Shape: core.Shape{n, C}, Data: lvlPos[be[0]*C : be[1]*C]}))
	}

	var sharedW *core.Tensor
	var sharedB core.HostTensor
	if c.SharedAdaLN {
		sharedW = linear("shared_ada_lin.1.weight", 6*C, C)
		sharedB = host("shared_ada_lin.1.bias", 6*C)
	}
	if c.L2NormAttn {
		m.attnScale = 1
	} else {
		m.attnScale = float32(0.25 / math.Sqrt(float64(c.HeadDim())))
	}
	maxScaleMul := float32(math.Log(100))
	for i := 0; i < c.Depth; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		var b block
		if c.SharedAdaLN {
			// ada_gss + shared_ada_lin(cond): fold ada_gss [1, 1, 6, C] into the shared linear's bias.
			gss := host(p+"ada_gss", 1, 1, 6, C)
			if err != nil {
				return err
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
		if err != nil {
			return err
		}
		qkvB := make([]float32, 3*C)
		copy(qkvB, qb.Data)
		copy(qkvB[2*C:], vb.Data)
		b.qkvB = upload(core.HostTensor{Shape: core.Shape{3 * C}, Data: qkvB})
		b.qkvW = linear(p+"attn.mat_qkv.weight", 3*C, C)
		if c.L2NormAttn {
			sm := host(p+"attn.scale_mul_1H11", 1, c.Heads, 1, 1)
			if err != nil {
				return err
			}
			s := make([]float32, c.Heads)
			for h := range s {
				s[h] = float32(math.Exp(float64(min(sm.Data[h], maxScaleMul))))
			}
			b.scaleMul = upload(core.HostTensor{Shape: core.Shape{c.Heads}, Data: s})
		}
		b.projW = linear(p+"attn.proj.weight", C, C)
		b.projB = get(p+"attn.proj.bias", C)
		b.fc1W = linear(p+"ffn.fc1.weight", c.FFN, C)
		b.fc1B = get(p+"ffn.fc1.bias", c.FFN)
		b.fc2W = linear(p+"ffn.fc2.weight", C, c.FFN)
		b.fc2B = get(p+"ffn.fc2.bias", C)
		m.blocks = append(m.blocks, b)
	}
	m.headAdaW = linear("head_nm.ada_lin.1.weight", 2*C, C)
	m.headAdaB = get("head_nm.ada_lin.1.bias", 2*C)
	m.headW = linear("head.weight", c.V, C)
	m.headB = get("head.bias", c.V)
	return err
}

// adaLN holds one block's six modulation rows for the current batch: each [B, C].
type adaLN struct{ gamma1, gamma2, scale1, scale2, shift1, shift2 *core.Tensor }

// condition computes, for class labels (null class = Classes), the AdaLN modulations of every block and of
// the head. They stay fixed over all scales of a generation.
func (m *Model) condition(o *core.Ops, labels []int) (cond *core.Tensor, ada []adaLN, headScale, headShift *core.Tensor) {
	C := m.cfg.C
	cond = o.Embedding(m.classEmb, labels) // [B, C]
	sc := o.SiLU(cond)
	for _, b := range m.blocks {
		a := o.Linear(sc, b.adaW, b.adaB) // [B, 6C]
		ada = append(ada, adaLN{
			gamma1: o.SliceLast(a, 0, C), gamma2: o.SliceLast(a, C, C),
			scale1: o.SliceLast(a, 2*C, C), scale2: o.SliceLast(a, 3*C, C),
			shift1: o.SliceLast(a, 4*C, C), shift2: o.SliceLast(a, 5*C, C),
		})
		o.Free(a)
	}
	h := o.Linear(sc, m.headAdaW, m.headAdaB) // [B, 2C]
	headScale, headShift = o.SliceLast(h, 0, C), o.SliceLast(h, C, C)
	o.Free(sc, h)
	return cond, ada, headScale, headShift
}

func freeAda(o *core.Ops, ada []adaLN) {
	for _, a := range ada {
		o.Free(a.gamma1, a.gamma2, a.scale1, a.scale2, a.shift1, a.shift2)
	}
}

// kvCache holds each block's keys and values, [B, L, C]: allocated once per generation at the full
// sequence length L, rows [0, n) hold the tokens of the scales run so far and each scale writes its rows
// after them (WriteRows). Growing the cache by concatenation instead would free a buffer of every
// intermediate length at every scale, which a buffer pool (webgpu) keeps: ~480 MB for VAR-d16.
type kvCache struct {
	k, v []*core.Tensor
	n    int
}

// newKVCache allocates the caches of depth blocks for a batch of bsz rows.
func (m *Model) newKVCache(o *core.Ops, bsz int) *kvCache {
	kv := &kvCache{k: make([]*core.Tensor, len(m.blocks)), v: make([]*core.Tensor, len(m.blocks))}
	for i := range m.blocks {
		kv.k[i], kv.v[i] = o.Zeros(bsz, m.cfg.L, m.cfg.C), o.Zeros(bsz, m.cfg.L, m.cfg.C)
	}
	return kv
}

// free releases the caches; freeing twice is a no-op.
func (kv *kvCache) free(o *core.Ops) {
	o.Free(kv.k...)
	o.Free(kv.v...)
	clear(kv.k)
	clear(kv.v)
}

// blockForward runs block i on x [B, l, C]. With kv, this scale's keys and values are written to the
// cache after its kv.n rows and attention sees all cached tokens (no mask); without, attention uses mask
// over x's own tokens. The caller advances kv.n once every block has run.
// tap names the intermediate tensors (prefix + "attn_out", "ffn_out").
func (m *Model) blockForward(o *core.Ops, i int, x *core.Tensor, a adaLN, kv *kvCache, mask *core.Tensor, tap string) *core.Tensor {
	if x == nil { // an earlier op failed: its error is recorded (Fail keeps the first)
		o.Fail("block", fmt.Errorf("nil input"))
		return nil
	}
	b := &m.blocks[i]
	c := m.cfg
	eps := c.NormEps

	ln := o.LayerNorm(x, eps)
	h := o.Modulate(ln, a.scale1, a.shift1)
	o.Free(ln)
	qkv := o.Linear(h, b.qkvW, b.qkvB) // [B, l, 3C]
	o.Free(h)
	var att *core.Tensor
	if kv != nil {
		// Slices, per-head normalisation and the cache writes in one op where the backend fuses them.
		q := o.QKVToCache(qkv, c.Heads, c.L2NormAttn, b.scaleMul, kv.k[i], kv.v[i], kv.n)
		o.Free(qkv)
		att = o.AttentionPrefix(q, kv.k[i], kv.v[i], kv.n+x.Dim(1), c.Heads, m.attnScale)
		o.Free(q)
	} else {
		q, k, v := o.SliceLast(qkv, 0, c.C), o.SliceLast(qkv, c.C, c.C), o.SliceLast(qkv, 2*c.C, c.C)
		o.Free(qkv)
		if c.L2NormAttn {
			qn, kn := o.NormalizeHeads(q, c.Heads, b.scaleMul), o.NormalizeHeads(k, c.Heads, nil)
			o.Free(q, k)
			q, k = qn, kn
		}
		att = o.Attention(q, k, v, c.Heads, m.attnScale, mask)
		o.Free(q, k, v)
	}
	ao := o.Linear(att, b.projW, b.projB)
	o.Free(att)
	o.Tap(tap+"attn_out", ao)
	x1 := o.AddMulRows(x, ao, a.gamma1)
	o.Free(ao)

	ln = o.LayerNorm(x1, eps)
	h = o.Modulate(ln, a.scale2, a.shift2)
	o.Free(ln)
	g := o.LinearGELU(h, b.fc1W, b.fc1B)
	o.Free(h)
	f2 := o.Linear(g, b.fc2W, b.fc2B)
	o.Free(g)
	o.Tap(tap+"ffn_out", f2)
	x2 := o.AddMulRows(x1, f2, a.gamma2)
	o.Free(x1, f2)
	return x2
}

// head is head(head_nm(x, cond)): AdaLN with the head's own modulation, then the vocabulary projection.
func (m *Model) head(o *core.Ops, x, scale, shift *core.Tensor, tap string) *core.Tensor {
	ln := o.LayerNorm(x, m.cfg.NormEps)
	h := o.Modulate(ln, scale, shift)
	o.Free(ln)
	o.Tap(tap+"head_nm_out", h)
	logits := o.Linear(h, m.headW, m.headB)
	o.Free(h)
	return logits
}

// TeacherForward is the training-time forward (official VAR.forward with cond_drop_rate 0): labels [B]
// and the teacher-forcing input xWoFirst [B, L-first_l, Cvae] (VQVAE idxBl_to_var_input) give logits
// [B, L, V], with the block-causal mask that lets each token see every token of its own and earlier
// scales. Taps: tf.x_in, tf.cond_BD_or_gss, tf.block{i}.{attn_out,ffn_out,out}, tf.head_nm_out.
func (m *Model) TeacherForward(o *core.Ops, labels []int, xWoFirst *core.Tensor) *core.Tensor {
	c := m.cfg
	for _, l := range labels {
		if l < 0 || l > c.Classes {
			o.Fail("var", fmt.Errorf("label %d outside [0, %d]", l, c.Classes))
			return nil
		}
	}
	bsz := len(labels)
	cond, ada, hs, hsh := m.condition(o, labels)
	defer freeAda(o, ada)
	defer o.Free(cond, hs, hsh)
	if c.SharedAdaLN {
		// cond_BD_or_gss is shared_ada_lin(cond) in the official code; not tapped here.
	} else {
		o.Tap("tf.cond_BD_or_gss", cond)
	}
	x := m.firstInput(o, cond, bsz)
	if x == nil {
		return nil
	}
	we := o.Linear(xWoFirst, m.wordW, m.wordB) // [B, L-first_l, C]
	rest := o.Add(we, m.restPosAll(o))
	all := o.Concat(1, x, rest)
	o.Free(we, rest, x)
	o.Tap("tf.x_in", all)

	mask := o.Upload(m.levelMask())
	defer o.Free(mask)
	x = all
	for i := range m.blocks {
		prev := o.SetScope(fmt.Sprintf("blocks.%d", i))
		tap := fmt.Sprintf("tf.block%d.", i)
		x2 := m.blockForward(o, i, x, ada[i], nil, mask, tap)
		o.SetScope(prev)
		o.Free(x)
		x = x2
		o.Tap(tap+"out", x)
	}
	logits := m.head(o, x, hs, hsh, "tf.")
	o.Free(x)
	return logits
}

// restPosAll is lvl_pos for the tokens after the first scale: [L-first_l, C].
func (m *Model) restPosAll(o *core.Ops) *core.Tensor {
	firstL := m.beginEnds[0][1]
	// lvlPosAll is [L, C]: take rows first_l.. by viewing it as [1, L*C] and slicing.
	flat := o.Reshape(m.lvlPosAll, 1, m.cfg.L*m.cfg.C)
	r := o.SliceLast(flat, firstL*m.cfg.C, (m.cfg.L-firstL)*m.cfg.C)
	return o.Reshape(r, m.cfg.L-firstL, m.cfg.C)
}

// firstInput is the first scale's input: cond broadcast over the first_l tokens plus pos_start and lvl_pos,
// [B, first_l, C].
func (m *Model) firstInput(o *core.Ops, cond *core.Tensor, bsz int) *core.Tensor {
	firstL := m.beginEnds[0][1]
	c3 := o.Reshape(cond, bsz, 1, m.cfg.C)
	rep := c3
	if firstL > 1 {
		cs := make([]*core.Tensor, firstL)
		for i := range cs {
			cs[i] = c3
		}
		rep = o.Concat(1, cs...)
	}
	x := o.Add(rep, m.sosPos)
	if rep != c3 {
		o.Free(rep)
	}
	return x
}

// levelMask is attn_bias_for_masking: 0 where the key's scale <= the query's scale, -Inf elsewhere, [L, L].
func (m *Model) levelMask() core.HostTensor {
	L := m.cfg.L
	d := make([]float32, L*L)
	ninf := float32(math.Inf(-1))
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			if m.levelOfTok[j] > m.levelOfTok[i] {
				d[i*L+j] = ninf
			}
		}
	}
	return core.HostTensor{Shape: core.Shape{L, L}, Data: d}
}
