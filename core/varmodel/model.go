package varmodel

import (
	"fmt"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

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
	stack      *nn.AdaLNStack
	headW      *core.Tensor // [V, C]
	headB      *core.Tensor
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
	if err := w.CheckAllUsed("a VAR checkpoint"); err != nil {
		return nil, fmt.Errorf("var: %w", err)
	}
	return m, nil
}

// Config returns the architecture.
func (m *Model) Config() Config { return m.cfg }

func (m *Model) load(w *core.Weights) error {
	c := m.cfg
	C, L := c.C, c.L
	l := core.NewLoader(w)
	get, linear, host, upload := l.Tensor, l.Linear, l.Host, l.Upload
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
	if l.Err() != nil {
		return l.Err()
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

	if l.Err() != nil {
		return l.Err()
	}
	var err error
	if m.stack, err = nn.LoadAdaLNStack(w, c.AdaLN()); err != nil {
		return err
	}
	m.headW = linear("head.weight", c.V, C)
	m.headB = get("head.bias", c.V)
	return l.Err()
}

// condition computes, for class labels (null class = Classes), the class embeddings cond [B, C] and the
// AdaLN modulations of every block and of the head. They stay fixed over all scales of a generation.
func (m *Model) condition(o *core.Ops, labels []int) (cond *core.Tensor, mod *nn.Modulations) {
	cond = o.Embedding(m.classEmb, labels) // [B, C]
	return cond, m.stack.Condition(o, cond)
}

// head is head(head_nm(x, cond)): AdaLN with the head's own modulation, then the vocabulary projection.
func (m *Model) head(o *core.Ops, x *core.Tensor, mod *nn.Modulations, tap string) *core.Tensor {
	h := m.stack.HeadNorm(o, x, mod)
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
	cond, mod := m.condition(o, labels)
	defer mod.Free(o)
	defer o.Free(cond)
	m.stack.TapCond(o, "tf.cond_BD_or_gss", cond)
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
	x = m.stack.Forward(o, all, mod, nil, mask, "", "tf.")
	logits := m.head(o, x, mod, "tf.")
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
func (m *Model) levelMask() core.HostTensor { return nn.BlockCausalMask(m.levelOfTok) }
