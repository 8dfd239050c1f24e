package varmodel

import (
	"context"
	"fmt"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
)

// Sampling is a model's default sampling settings.
type Sampling struct {
	CFG        float64
	TopK       int
	TopP       float64
	MoreSmooth bool
}

// OfficialSampling is the VAR paper's ImageNet setting (cfg 4, top-k 900, top-p 0.95): the defaults of a
// model whose metadata says nothing. It is the one place these numbers are written.
var OfficialSampling = Sampling{CFG: 4, TopK: 900, TopP: 0.95}

// Settings declares VAR's knobs with d as defaults. FlexVAR shares cfg, top-k and top-p.
func (d Sampling) Settings(v int) []gen.Setting {
	return append(gen.SamplingSettings(d.CFG, d.TopK, d.TopP, v),
		gen.Setting{Name: "more-smooth", Label: "more smooth", Help: "Gumbel-softmax soft token embeddings (smoother, less detailed)",
			Kind: gen.Bool, Default: fmt.Sprint(d.MoreSmooth)},
		gen.Setting{Name: "previews", Label: "previews", Help: "how the per-scale previews are made (gen.Request.Previews): auto (linear with a fitted map, else full up to 64 px, fast above), linear, fast or full",
			Kind: gen.Choice, Default: "auto", Choices: []string{"auto", "linear", "fast", "full"}})
}

// Generator is the pipeline on backend b as a family-neutral gen.Generator, with the model's default
// sampling settings. Previews follow InteractivePreviews.
func (p *Pipeline) Generator(b core.Backend, defaults Sampling) gen.Generator {
	return &generator{p: p, b: b, defaults: defaults}
}

type generator struct {
	p        *Pipeline
	b        core.Backend
	defaults Sampling
}

func (g *generator) Info() gen.Info {
	c := g.p.VAR.Config()
	return gen.Info{Family: "var", Classes: c.Classes, StepNoun: "scale", Steps: len(c.PatchNums), RandomAfter: true, Reroll: true,
		Summary: fmt.Sprintf("VAR depth %d, width %d, %d heads, %d classes, patch_nums %v, VQVAE V=%d Cvae=%d, %dx%d images",
			c.Depth, c.C, c.Heads, c.Classes, c.PatchNums, c.V, c.Cvae, g.p.VAE.ImageSize(), g.p.VAE.ImageSize())}
}

func (g *generator) Settings() []gen.Setting { return g.defaults.Settings(g.p.VAR.Config().V) }

func (g *generator) ImageSize(gen.Settings) (int, int, error) {
	return g.p.VAE.ImageSize(), g.p.VAE.ImageSize(), nil
}

// Request maps family-neutral settings to a VAR request.
func (g *generator) request(req gen.Request) (Request, error) {
	s, err := gen.Values(g.Settings(), req.Settings)
	if err != nil {
		return Request{}, err
	}
	r := Request{Labels: req.Labels, Seed: req.Seed, CFG: s.Float("cfg"), TopK: s.Int("top-k"), TopP: s.Float("top-p"),
		MoreSmooth: s.Bool("more-smooth"), Prefix: req.Prefix, RandomAfter: req.RandomAfter}
	if req.Previews {
		if mode := s["previews"]; mode == "auto" {
			r.Previews = InteractivePreviews(g.p.VAE.ImageSize(), g.p.LinearPreview != nil)
		} else if r.Previews, err = ParsePreviewMode(mode); err != nil {
			return Request{}, err
		}
	}
	return r, nil
}

func (g *generator) Generate(ctx context.Context, req gen.Request, onStep func(gen.Step) error) (*gen.Result, error) {
	return g.generate(ctx, req, nil, onStep)
}

func (g *generator) generate(ctx context.Context, req gen.Request, e *Edit, onStep func(gen.Step) error) (*gen.Result, error) {
	r, err := g.request(req)
	if err != nil {
		return nil, err
	}
	r.Edit = e
	var cb func(ScaleEvent) error
	if onStep != nil {
		cb = func(ev ScaleEvent) error {
			return onStep(gen.Step{Index: ev.Scale, Count: ev.Scales,
				Label: fmt.Sprintf("scale %d/%d (%dx%d)", ev.Scale+1, ev.Scales, ev.PN, ev.PN),
				GridH: ev.PN, GridW: ev.PN, Tokens: ev.Tokens, Preview: ev.Preview, Elapsed: ev.Elapsed, Decode: ev.Decode})
		}
	}
	res, err := g.p.Generate(ctx, g.b, r, cb)
	if err != nil {
		return nil, err
	}
	return &gen.Result{Images: res.Images, Tokens: res.Tokens}, nil
}

// Notes says when the previews asked for are not the ones made: linear previews of a model without a
// fitted map are fast ones (EffectivePreviews).
func (g *generator) Notes(s gen.Settings) []string {
	if m, err := ParsePreviewMode(s["previews"]); err == nil {
		if eff := g.p.EffectivePreviews(m); eff != m {
			return []string{fmt.Sprintf("previews %v: this model has no linear preview map (webvar convert -preview-fit); making %v previews", m, eff)}
		}
	}
	return nil
}

// EditGrid is the last scale's grid, the one an edit's keep-mask is on.
func (g *generator) EditGrid(gen.Settings) (int, int, error) {
	pn := g.p.VAR.Config().PatchNums
	return pn[len(pn)-1], pn[len(pn)-1], nil
}

// Edit is the notebook's zero-shot editing (EditOf); KeepSteps also keeps the first scales whole.
func (g *generator) Edit(ctx context.Context, req gen.EditRequest, onStep func(gen.Step) error) (*gen.Result, error) {
	o := core.NewOps(g.b)
	e, err := g.p.EditOf(o, req.Image, req.Keep)
	if err != nil {
		return nil, err
	}
	if req.KeepSteps < 0 || req.KeepSteps > len(e.Keep) {
		return nil, fmt.Errorf("keep steps %d: want 0..%d", req.KeepSteps, len(e.Keep))
	}
	for si := range req.KeepSteps {
		for i := range e.Keep[si] {
			e.Keep[si][i] = true
		}
	}
	return g.generate(ctx, req.Request, e, onStep)
}
