package mar

import (
	"fmt"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// Model is a loaded MAR transformer with its diffusion head. It is read-only after Load and safe to
// share between goroutines, each with its own core.Ops.
type Model struct {
	cfg       Config
	zProj     nn.Linear
	zProjLN   nn.LayerNorm
	classes   *core.Tensor // [Classes+1, Cenc]: class_emb rows, then fake_latent (the unconditional row)
	encPos    *core.Tensor // [Buffer+SeqLen, Cenc]
	enc       *nn.PreNormStack
	encNorm   nn.LayerNorm
	decEmbed  nn.Linear
	maskToken *core.Tensor // [1, Cdec]
	decPos    *core.Tensor // [Buffer+SeqLen, Cdec]
	dec       *nn.PreNormStack
	decNorm   nn.LayerNorm
	diffPos   *core.Tensor // [SeqLen, Cdec]
	net       *DiffNet
}

// Load reads the model from w. Every tensor must be used: an unknown key is a variant this code does
// not implement.
func Load(w *core.Weights, opt Options) (*Model, error) {
	cfg, err := InferConfig(w.Src, opt)
	if err != nil {
		return nil, fmt.Errorf("mar: %w", err)
	}
	m := &Model{cfg: cfg}
	if err := m.load(w); err != nil {
		return nil, fmt.Errorf("mar: %w", err)
	}
	if err := w.CheckAllUsed("a MAR checkpoint"); err != nil {
		return nil, fmt.Errorf("mar: %w", err)
	}
	return m, nil
}

// Config returns the architecture.
func (m *Model) Config() Config { return m.cfg }

// Net is the diffusion head.
func (m *Model) Net() *DiffNet { return m.net }

func (m *Model) load(w *core.Weights) error {
	c := m.cfg
	E, D, P := c.Enc.C, c.Dec.C, c.Buffer+c.SeqLen
	l := core.NewLoader(w)
	m.zProj = nn.LoadLinear(l, "z_proj", E, c.Ct, true)
	m.zProjLN = nn.LoadLayerNorm(l, "z_proj_ln", E, 1e-6)
	emb := l.Host("class_emb.weight", c.Classes, E)
	fake := l.Host("fake_latent", 1, E)
	m.encPos = l.Tensor("encoder_pos_embed_learned", 1, P, E)
	m.encNorm = nn.LoadLayerNorm(l, "encoder_norm", E, 1e-6)
	m.decEmbed = nn.LoadLinear(l, "decoder_embed", D, E, true)
	m.maskToken = l.Tensor("mask_token", 1, 1, D)
	m.decPos = l.Tensor("decoder_pos_embed_learned", 1, P, D)
	m.decNorm = nn.LoadLayerNorm(l, "decoder_norm", D, 1e-6)
	m.diffPos = l.Tensor("diffusion_pos_embed_learned", 1, c.SeqLen, D)
	if l.Err() != nil {
		return l.Err()
	}
	table := append(append([]float32(nil), emb.Data...), fake.Data...)
	m.classes = l.Upload(core.HostTensor{Shape: core.Shape{c.Classes + 1, E}, Data: table})
	var err error
	for _, r := range []struct {
		t     **core.Tensor
		shape []int
	}{{&m.encPos, []int{P, E}}, {&m.maskToken, []int{1, D}}, {&m.decPos, []int{P, D}}, {&m.diffPos, []int{c.SeqLen, D}}} {
		if *r.t, err = core.Reshape(*r.t, r.shape...); err != nil {
			return err
		}
	}
	if m.enc, err = nn.LoadPreNormStack(w, "encoder_blocks", nn.TimmKeys, c.Enc); err != nil {
		return err
	}
	if m.dec, err = nn.LoadPreNormStack(w, "decoder_blocks", nn.TimmKeys, c.Dec); err != nil {
		return err
	}
	m.net, err = loadDiffNet(w, "diffloss.net.", c)
	return err
}

// classRow is the row of the class table for label (Classes: the unconditional fake_latent).
func (m *Model) classRow(label int) (int, error) {
	if label < 0 || label > m.cfg.Classes {
		return 0, fmt.Errorf("mar: class %d outside 0..%d (%d is unconditional)", label, m.cfg.Classes, m.cfg.Classes)
	}
	return label, nil
}

// Encode is forward_mae_encoder: tokens [R, SeqLen, Ct] (the values at masked positions do not
// matter), masked[r][i] true where token i of row r is still to be generated (every row the same count),
// rows[r] the class table row of row r (Classes for the unconditional one). Returns [R, Buffer + known,
// Cenc] after encoder_norm.
func (m *Model) Encode(o *core.Ops, tokens *core.Tensor, masked [][]bool, rows []int) *core.Tensor {
	c := m.cfg
	R, P, E := len(rows), c.Buffer+c.SeqLen, c.Enc.C
	keep, err := keptSlots(masked, c)
	if err != nil {
		o.Fail("mar encoder", err)
		return nil
	}
	for _, r := range rows {
		if _, err := m.classRow(r); err != nil {
			o.Fail("mar encoder", err)
			return nil
		}
	}
	z := m.zProj.Apply(o, tokens) // [R, L, E]
	var bufIDs []int
	for _, r := range rows {
		for range c.Buffer {
			bufIDs = append(bufIDs, r)
		}
	}
	x := z
	if c.Buffer > 0 {
		buf := o.Reshape(o.Embedding(m.classes, bufIDs), R, c.Buffer, E)
		x = o.Concat(1, buf, z)
		o.Free(buf, z)
	}
	xp := o.Add(x, m.encPos)
	o.Free(x)
	ln := m.zProjLN.Apply(o, xp)
	o.Free(xp)
	// Drop the masked positions: the kept slots of every row, in order.
	var ids []int
	for r, ks := range keep {
		for _, s := range ks {
			ids = append(ids, r*P+s)
		}
	}
	kept := o.Reshape(o.Embedding(o.Reshape(ln, R*P, E), ids), R, len(keep[0]), E)
	o.Free(ln)
	h := m.enc.Forward(o, kept, nil, "mar.enc.")
	o.Free(kept)
	out := m.encNorm.Apply(o, h)
	o.Free(h)
	return out
}

// Decode is forward_mae_decoder: the encoder output x [R, Buffer + known, Cenc] and the same masks as
// Encode; returns z [R, SeqLen, Cdec] (buffer dropped, diffusion positions added).
func (m *Model) Decode(o *core.Ops, x *core.Tensor, masked [][]bool) *core.Tensor {
	c := m.cfg
	R, P, D := len(masked), c.Buffer+c.SeqLen, c.Dec.C
	keep, err := keptSlots(masked, c)
	if err != nil {
		o.Fail("mar decoder", err)
		return nil
	}
	n := len(keep[0])
	e := m.decEmbed.Apply(o, x) // [R, n, D]
	// Scatter into P slots per row, mask_token elsewhere: one gather from [the kept rows; mask_token].
	table := o.Concat(0, o.Reshape(e, R*n, D), m.maskToken)
	o.Free(e)
	ids := make([]int, R*P)
	for r, ks := range keep {
		for s := range P {
			ids[r*P+s] = R * n
		}
		for j, s := range ks {
			ids[r*P+s] = r*n + j
		}
	}
	grid := o.Reshape(o.Embedding(table, ids), R, P, D)
	o.Free(table)
	xp := o.Add(grid, m.decPos)
	o.Free(grid)
	h := m.dec.Forward(o, xp, nil, "mar.dec.")
	o.Free(xp)
	hn := m.decNorm.Apply(o, h)
	o.Free(h)
	// Drop the buffer.
	tok := make([]int, 0, R*c.SeqLen)
	for r := range R {
		for i := range c.SeqLen {
			tok = append(tok, r*P+c.Buffer+i)
		}
	}
	z := o.Reshape(o.Embedding(o.Reshape(hn, R*P, D), tok), R, c.SeqLen, D)
	o.Free(hn)
	out := o.Add(z, m.diffPos)
	o.Free(z)
	return out
}

// keptSlots is, per row, the slots of the buffer+tokens sequence that the encoder keeps: the buffer and
// the known tokens, in order. Every row must keep the same number.
func keptSlots(masked [][]bool, c Config) ([][]int, error) {
	if len(masked) == 0 {
		return nil, fmt.Errorf("no rows")
	}
	out := make([][]int, len(masked))
	for r, mr := range masked {
		if len(mr) != c.SeqLen {
			return nil, fmt.Errorf("row %d: mask of %d tokens, want %d", r, len(mr), c.SeqLen)
		}
		ks := make([]int, 0, c.Buffer+c.SeqLen)
		for s := range c.Buffer {
			ks = append(ks, s)
		}
		for i, isMasked := range mr {
			if !isMasked {
				ks = append(ks, c.Buffer+i)
			}
		}
		if r > 0 && len(ks) != len(out[0]) {
			return nil, fmt.Errorf("row %d keeps %d tokens, row 0 keeps %d: every row must know as many", r, len(ks)-c.Buffer, len(out[0])-c.Buffer)
		}
		out[r] = ks
	}
	if len(out[0]) == 0 {
		return nil, fmt.Errorf("nothing to encode: no buffer and every token masked")
	}
	return out, nil
}
