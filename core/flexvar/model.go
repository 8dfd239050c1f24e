package flexvar

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// Model is a loaded FlexVAR transformer. It is read-only after Load and safe to share between
// goroutines, each with its own core.Ops.
type Model struct {
	cfg      Config
	classEmb *core.Tensor // [classes+1, C]; row `classes` is the null class
	posStart *core.Tensor // [1, C]
	pos      *core.Tensor // pos_1LC [1, C, PosH, PosW]
	wordW    *core.Tensor // [C, Cvae]
	wordB    *core.Tensor
	stack    *nn.AdaLNStack
	headW    *core.Tensor // [V, C]
	headB    *core.Tensor
}

// Load reads the transformer from w (heads: see InferConfig). Every tensor of the checkpoint must be
// used: an unknown key means a variant this code does not implement, and is an error.
func Load(w *core.Weights, heads int) (*Model, error) {
	cfg, err := InferConfig(w.Src, heads)
	if err != nil {
		return nil, fmt.Errorf("flexvar: %w", err)
	}
	m := &Model{cfg: cfg}
	if err := m.load(w); err != nil {
		return nil, fmt.Errorf("flexvar: %w", err)
	}
	if err := w.CheckAllUsed("a FlexVAR checkpoint"); err != nil {
		return nil, fmt.Errorf("flexvar: %w", err)
	}
	return m, nil
}

// Config returns the architecture.
func (m *Model) Config() Config { return m.cfg }

func (m *Model) load(w *core.Weights) error {
	c := m.cfg
	C := c.C
	l := core.NewLoader(w)
	get, linear := l.Tensor, l.Linear
	// The training schedule's block-causal mask: derived from the schedule passed at run time instead.
	w.MarkUsed("attn_bias_for_masking")
	m.classEmb = get("class_emb.weight", c.Classes+1, C)
	m.posStart = get("pos_start", 1, 1, C)
	m.pos = get("pos_1LC", 1, C, c.PosH, c.PosW)
	m.wordW = linear("word_embed.weight", C, c.Cvae)
	m.wordB = get("word_embed.bias", C)
	m.headW = linear("head.weight", c.V, C)
	m.headB = get("head.bias", c.V)
	if l.Err() != nil {
		return l.Err()
	}
	var err error
	m.posStart, err = core.Reshape(m.posStart, 1, C)
	if err != nil {
		return err
	}
	m.stack, err = nn.LoadAdaLNStack(w, c.AdaLNConfig)
	return err
}

// Positions is the position embedding of grid g: pos_1LC area-resized to g (adaptive-average windows,
// which also upsample when g is larger than the grid), as tokens [g.N(), C] in row-major order.
func (m *Model) Positions(o *core.Ops, g Grid) *core.Tensor {
	r := m.pos
	if g.H != m.cfg.PosH || g.W != m.cfg.PosW {
		r = o.ResizeArea(m.pos, g.H, g.W)
	}
	t := o.Transpose12(o.Reshape(r, 1, m.cfg.C, g.N()))
	if r != m.pos {
		o.Free(r)
	}
	return o.Reshape(t, g.N(), m.cfg.C)
}

// condition is class_emb(labels) [B, C] (null class = Classes) and the blocks' and head's modulations.
func (m *Model) condition(o *core.Ops, labels []int) (*core.Tensor, *nn.Modulations) {
	cond := o.Embedding(m.classEmb, labels)
	return cond, m.stack.Condition(o, cond)
}

// firstInput is the first step's input: class embedding + pos_start + the 1x1 position, [B, 1, C].
func (m *Model) firstInput(o *core.Ops, cond *core.Tensor, pos0 *core.Tensor) *core.Tensor {
	c3 := o.Reshape(cond, cond.Dim(0), 1, m.cfg.C)
	a := o.Add(c3, m.posStart)
	x := o.Add(a, pos0)
	o.Free(a)
	return x
}

// embed is word_embed(x) + pos for x [B, n, Cvae] and pos [n, C].
func (m *Model) embed(o *core.Ops, x, pos *core.Tensor) *core.Tensor {
	we := o.Linear(x, m.wordW, m.wordB)
	out := o.Add(we, pos)
	o.Free(we)
	return out
}

// head is the vocabulary projection after head_nm.
func (m *Model) head(o *core.Ops, x *core.Tensor, mod *nn.Modulations) *core.Tensor {
	h := m.stack.HeadNorm(o, x, mod)
	logits := o.Linear(h, m.headW, m.headB)
	o.Free(h)
	return logits
}

// TeacherForward is the training-time forward (official FlexVAR.forward, cond_drop_rate 0) over a
// schedule: labels [B] and the teacher-forcing input xWoFirst [B, L-1, Cvae] (Tokenizer.TeacherInput)
// give logits [B, L, V] under the block-causal mask (a token sees every token of its own and earlier
// steps). Taps: tf.x_in, tf.cond_BD_or_gss, tf.block{i}.{attn_out,ffn_out,out}.
func (m *Model) TeacherForward(o *core.Ops, labels []int, xWoFirst *core.Tensor, sched []Grid) *core.Tensor {
	c := m.cfg
	if err := CheckSchedule(sched); err != nil {
		o.Fail("flexvar", err)
		return nil
	}
	for _, l := range labels {
		if l < 0 || l > c.Classes {
			o.Fail("flexvar", fmt.Errorf("label %d outside [0, %d]", l, c.Classes))
			return nil
		}
	}
	cond, mod := m.condition(o, labels)
	defer mod.Free(o)
	defer o.Free(cond)
	m.stack.TapCond(o, "tf.cond_BD_or_gss", cond)
	var poss []*core.Tensor
	for _, g := range sched {
		poss = append(poss, m.Positions(o, g))
	}
	first := m.firstInput(o, cond, poss[0])
	restPos := o.Concat(0, poss[1:]...)
	o.Free(poss...)
	rest := m.embed(o, xWoFirst, restPos)
	o.Free(restPos)
	x := o.Concat(1, first, rest)
	o.Free(first, rest)
	o.Tap("tf.x_in", x)

	mask := o.Upload(stepMask(sched))
	defer o.Free(mask)
	x = m.stack.Forward(o, x, mod, nil, mask, "", "tf.")
	logits := m.head(o, x, mod)
	o.Free(x)
	return logits
}

// stepMask is the block-causal attn_bias_for_masking of a schedule: 0 where the key's step <= the
// query's, -Inf elsewhere, [L, L].
func stepMask(sched []Grid) core.HostTensor {
	var stepOf []int
	for si, g := range sched {
		for j := 0; j < g.N(); j++ {
			stepOf = append(stepOf, si)
		}
	}
	return nn.BlockCausalMask(stepOf)
}

// StepMask is the block-causal attention mask of a schedule (attn_bias_for_masking), [L, L]: 0 where a
// query may see the key, -Inf elsewhere.
func StepMask(sched []Grid) core.HostTensor { return stepMask(sched) }

// SinCosGrid is the official initialisation of pos_1LC (generate_2d_rotary_position_embedding), [1, d,
// h, w] flattened: channel 2k is sin(y*div_k), channel 2k+1 cos(x*div_k), div_k = exp(2k * -(ln
// 10000/d)). Random official-shaped weights (bench) start from it.
func SinCosGrid(h, w, d int) []float32 {
	out := make([]float32, d*h*w)
	for k := 0; 2*k < d; k++ {
		div := math.Exp(float64(2*k) * -(math.Log(10000) / float64(d)))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				out[(2*k)*h*w+y*w+x] = float32(math.Sin(float64(y) * div))
				if 2*k+1 < d {
					out[(2*k+1)*h*w+y*w+x] = float32(math.Cos(float64(x) * div))
				}
			}
		}
	}
	return out
}
