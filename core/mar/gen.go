package mar

import (
	"context"
	"fmt"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
)

// Defaults are a model's default settings.
type Defaults = Sampling

// Settings declares MAR's knobs for a model of seqLen tokens.
func (d Defaults) Settings(seqLen int) []gen.Setting {
	iters := min(d.Iters, seqLen)
	var presets []string
	for _, n := range []int{4, 8, 16, 32, 64, 128, 256} {
		if n <= seqLen {
			presets = append(presets, fmt.Sprint(n))
		}
	}
	return []gen.Setting{
		{Name: "iters", Label: "iterations", Help: "autoregressive iterations: each samples a group of tokens in a random order (more: slower, better)",
			Kind: gen.Int, Default: fmt.Sprint(iters), Min: 1, Max: float64(seqLen), Step: 1, Presets: presets},
		{Name: "diffusion-steps", Label: "diffusion steps", Help: "denoising steps of the diffusion head per token (the official 100; fewer are faster)",
			Kind: gen.Int, Default: fmt.Sprint(d.DiffSteps), Min: 2, Max: TrainSteps, Step: 1, Presets: []string{"10", "25", "50", "100"}},
		{Name: "temperature", Label: "temperature", Help: "scales the diffusion noise (lower: smoother, less varied)",
			Kind: gen.Float, Default: fmt.Sprint(d.Temperature), Min: 0.05, Max: 2, Step: 0.05},
		{Name: "cfg", Label: "cfg", Help: "classifier-free guidance strength (1: off)", Kind: gen.Float,
			Default: fmt.Sprint(d.CFG), Min: 1, Max: 10, Step: 0.1},
		{Name: "cfg-schedule", Label: "cfg schedule", Help: "linear: guidance grows as the image fills in (official); constant: the same at every iteration",
			Kind: gen.Choice, Default: d.Schedule.String(), Choices: []string{"linear", "constant"}},
	}
}

// Generator is the pipeline on backend b as a family-neutral gen.Generator with the model's defaults.
func (p *Pipeline) Generator(b core.Backend, d Defaults) gen.Generator {
	return &generator{p: p, b: b, d: d}
}

type generator struct {
	p *Pipeline
	b core.Backend
	d Defaults
}

func (g *generator) Info() gen.Info {
	c, v := g.p.M.cfg, g.p.V.cfg
	s := g.p.ImageSize()
	return gen.Info{Family: "mar", Classes: c.Classes, StepNoun: "iteration", Steps: min(g.d.Iters, c.SeqLen),
		Summary: fmt.Sprintf("MAR encoder %dx%d, decoder %dx%d, buffer %d, diffusion MLP %dx%d, %d classes, %dx%d tokens of %d, KL VAE z=%d (%d px a latent), %dx%d images",
			c.Enc.Depth, c.Enc.C, c.Dec.Depth, c.Dec.C, c.Buffer, c.DiffDepth, c.DiffW, c.Classes, c.SeqH, c.SeqH, c.Ct, v.Embed, v.Downsample(), s, s)}
}

func (g *generator) Settings() []gen.Setting { return g.d.Settings(g.p.M.cfg.SeqLen) }

func (g *generator) ImageSize(gen.Settings) (int, int, error) {
	s := g.p.ImageSize()
	return s, s, nil
}

// Request maps family-neutral settings to a MAR request.
func (g *generator) Request(req gen.Request) (Request, error) {
	s, err := gen.Values(g.Settings(), req.Settings)
	if err != nil {
		return Request{}, err
	}
	sched, err := ParseCFGSchedule(s["cfg-schedule"])
	if err != nil {
		return Request{}, err
	}
	if req.RandomAfter != 0 {
		return Request{}, fmt.Errorf("random-after: MAR has no scales to randomize after")
	}
	if len(req.Prefix) > 0 {
		return Request{}, fmt.Errorf("MAR's tokens are continuous latents: it cannot keep a prefix of token ids")
	}
	for _, l := range req.Labels {
		if l < 0 || l >= g.p.M.cfg.Classes {
			return Request{}, fmt.Errorf("class %d outside 0..%d", l, g.p.M.cfg.Classes-1)
		}
	}
	return Request{Labels: req.Labels, Rand: NewRandom(req.Seed), Sampling: Sampling{Iters: s.Int("iters"),
		DiffSteps: s.Int("diffusion-steps"), CFG: s.Float("cfg"), Schedule: sched, Temperature: s.Float("temperature")}}, nil
}

func (g *generator) Generate(ctx context.Context, req gen.Request, onStep func(gen.Step) error) (*gen.Result, error) {
	r, err := g.Request(req)
	if err != nil {
		return nil, err
	}
	o := core.NewOps(g.b)
	defer o.ReleaseIdle()
	start := time.Now()
	B := len(req.Labels)
	c := g.p.M.cfg
	r.OnIteration = func(it Iteration) error {
		if onStep == nil || it.Index == it.Count-1 {
			return nil // the last iteration's image is the final decode below
		}
		ev := gen.Step{Index: it.Index, Count: it.Count, Label: fmt.Sprintf("iteration %d/%d", it.Index+1, it.Count),
			GridH: c.SeqH, GridW: c.SeqH}
		if req.Previews {
			t0 := time.Now()
			pv := g.preview(o, it.Tokens, B, it)
			if err := o.Err(); err != nil {
				return err
			}
			ev.Preview, ev.Decode = &pv, time.Since(t0)
		}
		ev.Elapsed = time.Since(start)
		return onStep(ev)
	}
	tokens, err := g.p.Run(ctx, o, r)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	img := toUnit(o, g.p.Decode(o, tokens, B), nil, 0)
	if err := o.Err(); err != nil {
		return nil, err
	}
	res := &gen.Result{Images: img, Latents: &core.HostTensor{Shape: core.Shape{B, c.SeqLen, c.Ct}, Data: tokens}}
	if onStep != nil {
		err := onStep(gen.Step{Index: r.Iters - 1, Count: r.Iters, Label: fmt.Sprintf("iteration %d/%d", r.Iters, r.Iters),
			GridH: c.SeqH, GridW: c.SeqH, Preview: &res.Images, Elapsed: time.Since(start), Decode: time.Since(t0)})
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// preview decodes the tokens known after an iteration (zeros where none yet) and dims the patches still
// masked, so that the image visibly fills in.
func (g *generator) preview(o *core.Ops, tokens []float32, b int, it Iteration) core.HostTensor {
	next := make([][]bool, b)
	for s := range b {
		next[s] = make([]bool, len(it.MaskIn[s]))
		for i, m := range it.MaskIn[s] {
			next[s][i] = m && !it.Predicted[s][i]
		}
	}
	return toUnit(o, g.p.Decode(o, tokens, b), next, g.p.M.cfg.SeqH)
}

// toUnit downloads an image [B, 3, H, W] in about [-1, 1] as (x+1)/2 clamped to [0, 1] and frees it;
// with masked (per image, per token of a side x side grid), the pixels of masked tokens are dimmed.
func toUnit(o *core.Ops, img *core.Tensor, masked [][]bool, side int) core.HostTensor {
	h := o.Download(img)
	o.Free(img)
	for i, v := range h.Data {
		h.Data[i] = min(max((v+1)*0.5, 0), 1)
	}
	if masked == nil || len(h.Shape) != 4 {
		return h
	}
	H, W := h.Shape[2], h.Shape[3]
	for s, m := range masked {
		for ch := range 3 {
			for y := range H {
				for x := range W {
					if m[(y*side/H)*side+x*side/W] {
						h.Data[((s*3+ch)*H+y)*W+x] *= 0.3
					}
				}
			}
		}
	}
	return h
}
