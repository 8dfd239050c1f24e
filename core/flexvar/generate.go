package flexvar

import (
	"context"
	"fmt"
	"github.com/webvar/webvar/core/edit"
	"slices"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
	"github.com/webvar/webvar/core/sample"
)

// Pipeline is a FlexVAR transformer with its tokenizer: class labels in, images out (official
// autoregressive_infer_cfg).
type Pipeline struct {
	VAR *Model
	VAE *Tokenizer
}

// NewPipeline checks that the two models fit together.
func NewPipeline(m *Model, t *Tokenizer) (*Pipeline, error) {
	mc, tc := m.Config(), t.Config()
	if mc.Cvae != tc.Cvae {
		return nil, fmt.Errorf("FlexVAR expects %d-wide codes (word_embed), the tokenizer's codebook has %d", mc.Cvae, tc.Cvae)
	}
	if mc.V != tc.V {
		return nil, fmt.Errorf("FlexVAR predicts %d codes (head), the tokenizer's codebook has %d", mc.V, tc.V)
	}
	return &Pipeline{VAR: m, VAE: t}, nil
}

// LoadPipeline builds the transformer from varSrc and the tokenizer from vaeSrc on backend b.
func LoadPipeline(varSrc, vaeSrc core.WeightSource, b core.Backend, heads int) (*Pipeline, error) {
	m, err := Load(core.NewWeights(varSrc, b), heads)
	if err != nil {
		return nil, err
	}
	vw := core.NewWeights(vaeSrc, b)
	t, err := LoadTokenizer(vw)
	if err != nil {
		return nil, err
	}
	if err := vw.CheckAllUsed("a FlexVAR tokenizer checkpoint"); err != nil {
		return nil, fmt.Errorf("flexvar tokenizer: %w", err)
	}
	return NewPipeline(m, t)
}

// CFGMode is how the conditional and unconditional logits are mixed.
type CFGMode int

const (
	// CFGLinear is FlexVAR's default: t = cfg * si / min(K-1, 9) (t = cfg for steps above MaxPN),
	// logits = (1+t)*cond - t*uncond.
	CFGLinear CFGMode = iota
	// CFGLlamaGen is used_llamagen_cfg: logits = uncond + cfg*(cond - uncond) at every step.
	CFGLlamaGen
)

func (m CFGMode) String() string {
	if m == CFGLlamaGen {
		return "llamagen"
	}
	return "linear"
}

// ParseCFGMode maps "linear" or "llamagen" to its mode.
func ParseCFGMode(s string) (CFGMode, error) {
	switch s {
	case "linear", "":
		return CFGLinear, nil
	case "llamagen":
		return CFGLlamaGen, nil
	}
	return CFGLinear, fmt.Errorf("cfg mode %q: want linear or llamagen", s)
}

// DefaultMaxPN is the official max_pn: steps with a larger side use t = cfg and greedy decoding.
const DefaultMaxPN = 16

// Request is one generation.
type Request struct {
	Labels   []int   // class per image, in [0, Classes)
	Schedule []Grid  // the steps' grids (CheckSchedule); nil: DefaultSchedule
	CFG      float64 // guidance strength
	CFGMode  CFGMode
	MaxPN    int // 0: DefaultMaxPN
	TopK     int // 0: off; 1: greedy (forced for steps the official rules decode greedily)
	TopP     float64
	Seed     uint64
	// Prefix optionally fixes the tokens of the first len(Prefix) steps (each B*N ids, image-major)
	// instead of sampling them.
	Prefix [][]int
	// Previews decodes every step's own tokens (each step is a complete image at its grid's size),
	// resized to the final image size, into StepEvent.Preview.
	Previews bool
	// Edit, when set, teacher-forces an input image's tokens (EditOf) at its kept positions of every
	// step: image-to-image (refinement, in/out-painting, expansion). A label may then be Classes, the
	// null class (plain in-painting).
	Edit *edit.Edit
}

// StepEvent reports a finished step.
type StepEvent struct {
	Step, Steps int
	Grid        Grid
	Tokens      []int            // B*N ids, image-major, row-major within an image
	Preview     *core.HostTensor // [B, 3, H, W] in [0, 1]: the step's decode (Request.Previews), the image at the last step
	Elapsed     time.Duration    // since the start of the generation
	Decode      time.Duration    // the part spent decoding
	Greedy      bool             // the official rules forced top-k 1 at this step
}

// Result is a finished generation.
type Result struct {
	Tokens [][]int         // per step: B*N ids
	Images core.HostTensor // [B, 3, H, W] in [0, 1]: (x+1)/2 clamped
}

func (p *Pipeline) schedule(req Request) []Grid {
	if req.Schedule == nil {
		return Square(DefaultSchedule)
	}
	return req.Schedule
}

func (p *Pipeline) validate(req Request) error {
	c := p.VAR.Config()
	if len(req.Labels) == 0 {
		return fmt.Errorf("no labels: nothing to generate")
	}
	maxLabel := c.Classes
	if req.Edit != nil {
		maxLabel++ // the null class
	}
	for _, l := range req.Labels {
		if l < 0 || l >= maxLabel {
			return fmt.Errorf("class %d outside [0, %d)", l, maxLabel)
		}
	}
	if req.TopK < 0 || req.TopP < 0 || req.TopP > 1 {
		return fmt.Errorf("top-k %d / top-p %g: want top-k >= 0 and 0 <= top-p <= 1", req.TopK, req.TopP)
	}
	if req.MaxPN < 0 {
		return fmt.Errorf("max-pn %d: want >= 1 (0: %d)", req.MaxPN, DefaultMaxPN)
	}
	if req.CFGMode != CFGLinear && req.CFGMode != CFGLlamaGen {
		return fmt.Errorf("cfg mode %d: want CFGLinear or CFGLlamaGen", req.CFGMode)
	}
	s := p.schedule(req)
	if err := CheckSchedule(s); err != nil {
		return err
	}
	if req.Edit != nil {
		sizes := make([]int, len(s))
		for i, g := range s {
			sizes[i] = g.N()
		}
		if err := req.Edit.Check(sizes); err != nil {
			return err
		}
		for si, ids := range req.Edit.Tokens {
			for _, id := range ids {
				if id < 0 || id >= c.V {
					return fmt.Errorf("edit step %d: token %d outside [0, %d)", si, id, c.V)
				}
			}
		}
	}
	if len(req.Prefix) > len(s) {
		return fmt.Errorf("prefix has %d steps, the schedule %d", len(req.Prefix), len(s))
	}
	for si, ids := range req.Prefix {
		if want := len(req.Labels) * s[si].N(); len(ids) != want {
			return fmt.Errorf("prefix step %d has %d tokens, want %d", si, len(ids), want)
		}
		for _, id := range ids {
			if id < 0 || id >= c.V {
				return fmt.Errorf("prefix step %d: token %d outside [0, %d)", si, id, c.V)
			}
		}
	}
	return nil
}

// ImageSize is the pixel size of the images a schedule ends in.
func (p *Pipeline) ImageSize(sched []Grid) (h, w int) {
	g := sched[len(sched)-1]
	f := p.VAE.Config().Downsample()
	return g.H * f, g.W * f
}

// Generate runs a request on a fresh op sequence; onStep (may be nil) is called after every step, in
// order; an error from it stops the generation and is returned.
func (p *Pipeline) Generate(ctx context.Context, b core.Backend, req Request, onStep func(StepEvent) error) (*Result, error) {
	return p.Run(ctx, core.NewOps(b), req, onStep)
}

// Run is Generate on a caller's op sequence (tests set o.OnTap to see ar.s{k}.tok_map, ar.s{k}.block{i}.out,
// ar.s{k}.logits_raw, ar.s{k}.logits_cfg, ar.s{k}.next_in).
func (p *Pipeline) Run(ctx context.Context, o *core.Ops, req Request, onStep func(StepEvent) error) (*Result, error) {
	if err := p.validate(req); err != nil {
		return nil, err
	}
	defer o.ReleaseIdle()
	start := time.Now()
	m, c := p.VAR, p.VAR.Config()
	sched := p.schedule(req)
	maxPN := req.MaxPN
	if maxPN == 0 {
		maxPN = DefaultMaxPN
	}
	bsz := len(req.Labels)
	k := len(sched)
	rng := core.NewRNG(req.Seed)
	total := 0
	for _, g := range sched {
		total += g.N()
	}

	// Batch 2B: conditional rows first, then the null class for CFG.
	labels := make([]int, 2*bsz)
	copy(labels, req.Labels)
	for i := bsz; i < 2*bsz; i++ {
		labels[i] = c.Classes
	}
	cond, mod := m.condition(o, labels)
	defer mod.Free(o)
	kv := nn.NewKVCache(o, c.Depth, 2*bsz, total, c.C)
	defer kv.Free(o)
	pos0 := m.Positions(o, sched[0])
	x := m.firstInput(o, cond, pos0)
	o.Free(cond, pos0)
	res := &Result{}
	for si, g := range sched {
		if err := ctx.Err(); err != nil {
			o.Free(x)
			return nil, err
		}
		pfx := fmt.Sprintf("ar.s%d.", si)
		o.Tap(pfx+"tok_map", x)
		x = m.stack.Forward(o, x, mod, kv, nil, fmt.Sprintf("step %d: ", si), pfx)
		kv.N += g.N()
		if si == k-1 {
			kv.Free(o) // the decoder gets the memory
		}
		logitsT := m.head(o, x, mod)
		o.Free(x)
		x = nil
		o.Tap(pfx+"logits_raw", logitsT)
		raw := o.Download(logitsT)
		o.Free(logitsT)
		if err := o.Err(); err != nil {
			return nil, err
		}
		mixed := mixCFG(raw.Data, req, si, k, g, maxPN)
		if o.OnTap != nil {
			t := o.Upload(core.HostTensor{Shape: core.Shape{bsz, g.N(), c.V}, Data: mixed})
			o.Tap(pfx+"logits_cfg", t)
			o.Free(t)
		}
		greedy := !sampled(g, maxPN)
		var ids []int
		if si < len(req.Prefix) {
			ids = append([]int(nil), req.Prefix[si]...)
		} else {
			topK, topP := req.TopK, req.TopP
			if greedy {
				topK, topP = 1, 0
			}
			ids, _ = sample.Scale(mixed, c.V, topK, topP, false, 0, rng)
		}
		if req.Edit != nil {
			req.Edit.Apply(si, ids)
		}
		res.Tokens = append(res.Tokens, ids)
		if si+1 < k {
			next := sched[si+1]
			in := p.VAE.NextInput(o, ids, bsz, g, next)
			o.Tap(pfx+"next_in", in)
			pos := m.Positions(o, next)
			xi := m.embed(o, in, pos)
			x = o.Concat(0, xi, xi)
			o.Free(in, pos, xi)
		}
		if err := o.Err(); err != nil {
			o.Free(x)
			return nil, err
		}
		ev := StepEvent{Step: si, Steps: k, Grid: g, Tokens: ids, Greedy: greedy}
		decodeStart := time.Now()
		if si == k-1 {
			o.ReleaseIdle() // the transformer's pooled buffers are no use to the decoder
			img := p.VAE.Decode(o, ids, bsz, g)
			o.Tap("ar.img", img)
			res.Images = toUnit(o, img)
			ev.Preview = &res.Images
		} else if req.Previews {
			h, w := p.ImageSize(sched)
			img := p.VAE.Decode(o, ids, bsz, g)
			if img != nil && (img.Dim(2) != h || img.Dim(3) != w) {
				up := o.ResizeBicubic(img, h, w)
				o.Free(img)
				img = up
			}
			pv := toUnit(o, img)
			ev.Preview = &pv
		}
		if err := o.Err(); err != nil {
			o.Free(x)
			return nil, err
		}
		ev.Decode = time.Since(decodeStart)
		ev.Elapsed = time.Since(start)
		if onStep != nil {
			if err := onStep(ev); err != nil {
				o.Free(x)
				return nil, err
			}
		}
	}
	return res, o.Err()
}

// mixCFG is the guidance of step si of k: raw [2B, l, V] (conditional rows first) to [B*l*V].
func mixCFG(raw []float32, req Request, si, k int, g Grid, maxPN int) []float32 {
	if req.CFGMode == CFGLlamaGen {
		s := float32(req.CFG)
		half := len(raw) / 2
		out := make([]float32, half)
		for i := range out {
			u := raw[half+i]
			out[i] = u + (raw[i]-u)*s
		}
		return out
	}
	// ratio = si / min(K-1, 9); a single-step schedule has ratio 0 (the official code divides by zero).
	ratio := 0.0
	if d := min(k-1, 9); d > 0 {
		ratio = float64(si) / float64(d)
	}
	if g.Side() > maxPN {
		ratio = 1 // t = cfg
	}
	return sample.CFGMix(raw, req.CFG, ratio)
}

// toUnit downloads an image [B, 3, H, W] in about [-1, 1] as (x+1)/2 clamped to [0, 1], and frees it.
func toUnit(o *core.Ops, img *core.Tensor) core.HostTensor {
	h := o.Download(img)
	o.Free(img)
	for i, v := range h.Data {
		h.Data[i] = min(max((v+1)*0.5, 0), 1)
	}
	return h
}

// EditOf tokenizes image [1, 3, H, W] (values in [-1, 1], the size the schedule ends in) at every step of
// sched, as FlexVAR's image-to-image does (the paper's; the released code has none): encoder ->
// quant_conv -> area-downsampled to each step's grid -> the nearest l2-normalised code, each step on its
// own. mask is a keep-mask on the last step's grid (1 = keep; edit.BoxMask makes a box), resized to every
// step (edit.KeepMasks); the first keepSteps steps are kept entirely (refinement: they fix the layout, the
// later steps are generated anew).
func (p *Pipeline) EditOf(o *core.Ops, image core.HostTensor, sched []Grid, mask []float32, keepSteps int) (*edit.Edit, error) {
	if err := CheckSchedule(sched); err != nil {
		return nil, err
	}
	last := sched[len(sched)-1]
	h, w := p.ImageSize(sched)
	if !image.Shape.Equal(core.Shape{1, 3, h, w}) {
		return nil, fmt.Errorf("edit image %v, want [1, 3, %d, %d] (the size the schedule ends in)", image.Shape, h, w)
	}
	if keepSteps < 0 || keepSteps > len(sched) {
		return nil, fmt.Errorf("keep steps %d: want 0..%d", keepSteps, len(sched))
	}
	grids := make([][2]int, len(sched))
	for i, g := range sched {
		grids[i] = [2]int{g.H, g.W}
	}
	keep, err := edit.KeepMasks(mask, last.H, last.W, grids)
	if err != nil {
		return nil, err
	}
	// The notebook's rule keeps grids of at most 3 tokens whatever the mask; a mask that keeps nothing
	// keeps nothing at all here, so that it is plain generation (with keepSteps: pure refinement).
	if !slices.ContainsFunc(mask, func(v float32) bool { return v > 0.5 }) {
		for _, k := range keep {
			clear(k)
		}
	}
	for si := range keepSteps {
		for i := range keep[si] {
			keep[si][i] = true
		}
	}
	x := o.Upload(image)
	lat := p.VAE.Encode(o, x)
	o.Free(x)
	e := &edit.Edit{Keep: keep}
	for _, g := range sched {
		e.Tokens = append(e.Tokens, p.VAE.Quantize(o, lat, g))
	}
	o.Free(lat)
	if err := o.Err(); err != nil {
		return nil, err
	}
	return e, nil
}
