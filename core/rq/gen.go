package rq

import (
	"context"
	"fmt"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
)

// Defaults are a model's default sampling settings.
type Defaults struct {
	Temperature float64
	TopK        int // 0: the vocabulary size (every code)
	TopP        float64
}

// OfficialDefaults are the released ImageNet configs' sampling settings (temperature 1.0, top-k 16384 =
// every code, top-p 0.92 for the 480M model); top-k 0 stands for the model's vocabulary size.
var OfficialDefaults = Defaults{Temperature: 1.0, TopK: 0, TopP: 0.92}

// with fills d's zero fields from def.
func (d Defaults) with(def Defaults) Defaults {
	if d.Temperature == 0 {
		d.Temperature = def.Temperature
	}
	if d.TopK == 0 {
		d.TopK = def.TopK
	}
	if d.TopP == 0 {
		d.TopP = def.TopP
	}
	return d
}

// Settings declares RQ's knobs for a model of v codes per depth.
func (d Defaults) Settings(v int) []gen.Setting {
	k := d.TopK
	if k <= 0 || k > v {
		k = v
	}
	return []gen.Setting{
		{Name: "temperature", Label: "temperature", Help: "divides the logits before top-k and top-p (1: the model's distribution)",
			Kind: gen.Float, Default: fmt.Sprint(d.Temperature), Min: 0.05, Max: 2, Step: 0.05},
		{Name: "top-k", Label: "top-k", Help: fmt.Sprintf("keep the k most likely codes at each step (0 or %d: all, 1: greedy)", v),
			Kind: gen.Int, Default: fmt.Sprint(k), Min: 0, Max: float64(v), Step: 1,
			Presets: []string{"1", "2", "5", "10", "50", "100", "250", "1024", fmt.Sprint(v)}},
		{Name: "top-p", Label: "top-p", Help: "nucleus sampling: keep the most likely codes until their mass reaches p (0 or 1: off)",
			Kind: gen.Float, Default: fmt.Sprint(d.TopP), Min: 0, Max: 1, Step: 0.01},
	}
}

// Generator is the pipeline on backend b as a family-neutral gen.Generator; zero fields of d take the
// release's defaults (Pipeline.Defaults), then OfficialDefaults.
func (p *Pipeline) Generator(b core.Backend, d Defaults) gen.Generator {
	return &generator{p: p, b: b, d: d.with(p.Defaults).with(OfficialDefaults)}
}

type generator struct {
	p *Pipeline
	b core.Backend
	d Defaults
}

func (g *generator) Info() gen.Info {
	c, v := g.p.M.cfg, g.p.V.cfg
	h, w := g.p.ImageSize()
	return gen.Info{Family: "rq", Classes: c.Classes(), StepNoun: "position", Steps: c.Positions(), Reroll: true,
		Summary: fmt.Sprintf("RQ-Transformer width %d, body %d x %d heads, head %d x %d heads, %d classes, %dx%dx%d codes of %d (RQ-VAE %d-wide codes, %d px a code), %dx%d images",
			c.C, c.Body.Layers, c.Body.Heads, c.Head.Layers, c.Head.Heads, c.Classes(), c.H, c.W, c.D, c.V, v.Embed, v.Downsample(), w, h)}
}

func (g *generator) Settings() []gen.Setting { return g.d.Settings(g.p.M.cfg.V) }

func (g *generator) ImageSize(gen.Settings) (int, int, error) {
	h, w := g.p.ImageSize()
	return h, w, nil
}

// Request maps family-neutral settings to an RQ request.
func (g *generator) Request(req gen.Request) (Request, error) {
	s, err := gen.Values(g.Settings(), req.Settings)
	if err != nil {
		return Request{}, err
	}
	if req.RandomAfter != 0 {
		return Request{}, fmt.Errorf("random-after: RQ has no scales to randomize after")
	}
	samp := Sampling{Temperature: s.Float("temperature"), TopK: s.Int("top-k"), TopP: s.Float("top-p")}
	if err := samp.check(); err != nil {
		return Request{}, err
	}
	if err := g.p.M.checkLabels(req.Labels); err != nil {
		return Request{}, err
	}
	return Request{Labels: req.Labels, Sampling: samp, RNG: core.NewRNG(req.Seed), Prefix: req.Prefix}, nil
}

func (g *generator) Generate(ctx context.Context, req gen.Request, onStep func(gen.Step) error) (*gen.Result, error) {
	r, err := g.Request(req)
	if err != nil {
		return nil, err
	}
	o := core.NewOps(g.b)
	defer o.ReleaseIdle()
	c := g.p.M.cfg
	L := c.Positions()
	label := func(i int) string { return fmt.Sprintf("position %d/%d", i+1, L) }
	r.OnPosition = func(pos Position) error {
		if onStep == nil || pos.Index == L-1 {
			return nil // the last position's image is the final decode below
		}
		ev := gen.Step{Index: pos.Index, Count: L, Label: label(pos.Index), GridH: c.H, GridW: c.W, Tokens: positionIDs(pos.Codes, pos.Index)}
		if req.Previews {
			t0 := time.Now()
			pv, err := g.preview(o, pos.Codes, pos.Index)
			if err != nil {
				return err
			}
			ev.Preview, ev.Decode = &pv, time.Since(t0)
		}
		ev.Elapsed = pos.Elapsed
		return onStep(ev)
	}
	start := time.Now()
	codes, err := g.p.Sample(ctx, o, r)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	img := g.p.DecodeHost(o, codes)
	if err := o.Err(); err != nil {
		return nil, err
	}
	res := &gen.Result{Images: ToUnit(img)}
	for i := range L {
		res.Tokens = append(res.Tokens, positionIDs(codes, i))
	}
	if onStep != nil {
		err := onStep(gen.Step{Index: L - 1, Count: L, Label: label(L - 1), GridH: c.H, GridW: c.W, Tokens: res.Tokens[L-1],
			Preview: &res.Images, Elapsed: time.Since(start), Decode: time.Since(t0)})
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// positionIDs are position i's codes, B*D ids image-major (a gen.Step's and Request.Prefix's layout).
func positionIDs(c Codes, i int) []int {
	out := make([]int, 0, c.B*c.D)
	for b := range c.B {
		for d := range c.D {
			out = append(out, c.IDs[c.At(b, i, d)])
		}
	}
	return out
}

// preview decodes the codes of positions 0..i with the later ones as zero vectors (NoCode): the image so
// far, coarse where nothing is known yet.
func (g *generator) preview(o *core.Ops, c Codes, i int) (core.HostTensor, error) {
	pc := c
	pc.IDs = append([]int(nil), c.IDs...)
	for b := range c.B {
		for pos := i + 1; pos < c.H*c.W; pos++ {
			for d := range c.D {
				pc.IDs[pc.At(b, pos, d)] = g.p.V.NoCode()
			}
		}
	}
	h := g.p.DecodeHost(o, pc)
	return ToUnit(h), o.Err()
}

var (
	_ gen.Editor      = (*generator)(nil)
	_ gen.DepthViewer = (*generator)(nil)
)

// Depths is the code depth D.
func (g *generator) Depths() int { return g.p.M.cfg.D }

// DecodeDepths decodes r's codes summed over depths 0..k-1 (decode_partial_code with 'add', the coarse
// to fine reconstructions: the codes of a position are residuals, so their partial sums are coarser
// latents). It is the decode Generate ends with, stopped k depths in, so k = D is the final image bit
// for bit.
func (g *generator) DecodeDepths(r *gen.Result, k int) (core.HostTensor, error) {
	c := g.p.M.cfg
	if k < 1 || k > c.D {
		return core.HostTensor{}, fmt.Errorf("rq depths: %d, want 1..%d", k, c.D)
	}
	codes, err := codesOfSteps(r.Tokens, c.H, c.W, c.D)
	if err != nil {
		return core.HostTensor{}, err
	}
	o := core.NewOps(g.b)
	defer o.ReleaseIdle()
	img := g.p.V.DecodePartial(o, codes, k-1, SumFirst)
	h := o.Download(img)
	o.Free(img)
	if err := o.Err(); err != nil {
		return core.HostTensor{}, err
	}
	return ToUnit(h), nil
}

// codesOfSteps is the code map of per-position ids (Result.Tokens: per position B*D ids, image-major),
// the inverse of positionIDs.
func codesOfSteps(steps [][]int, h, w, d int) (Codes, error) {
	if len(steps) != h*w || len(steps[0])%d != 0 || len(steps[0]) == 0 {
		return Codes{}, fmt.Errorf("rq depths: %d positions, want %d x %d of B*%d codes", len(steps), h, w, d)
	}
	c := NewCodes(len(steps[0])/d, h, w, d)
	for pos, ids := range steps {
		if len(ids) != c.B*d {
			return Codes{}, fmt.Errorf("rq depths: position %d has %d codes, want %d", pos, len(ids), c.B*d)
		}
		for b := range c.B {
			copy(c.IDs[c.At(b, pos, 0):c.At(b, pos, 0)+d], ids[b*d:(b+1)*d])
		}
	}
	return c, nil
}

// EditGrid is the code map's grid (the keep-mask's).
func (g *generator) EditGrid(gen.Settings) (int, int, error) { return g.p.M.cfg.H, g.p.M.cfg.W, nil }

// Edit is image completion: the input's codes of the first positions in raster order are kept, the rest
// generated. The kept count is req.KeepSteps (positions), else the raster prefix req.Keep marks (a mask
// that keeps anything after a regenerated position is an error: RQ generates in raster order).
func (g *generator) Edit(ctx context.Context, req gen.EditRequest, onStep func(gen.Step) error) (*gen.Result, error) {
	c := g.p.M.cfg
	keep := req.KeepSteps
	if keep == 0 {
		if len(req.Keep) != c.Positions() {
			return nil, fmt.Errorf("rq edit: keep-mask of %d values, want %d x %d", len(req.Keep), c.H, c.W)
		}
		for keep < len(req.Keep) && req.Keep[keep] > 0.5 {
			keep++
		}
		for i := keep; i < len(req.Keep); i++ {
			if req.Keep[i] > 0.5 {
				return nil, fmt.Errorf("rq edit: position %d is kept after regenerated position %d: RQ completes images in raster order, so only a prefix can be kept", i, keep)
			}
		}
	}
	if keep < 0 || keep > c.Positions() {
		return nil, fmt.Errorf("rq edit: keep %d positions, want 0..%d", keep, c.Positions())
	}
	h, w := g.p.ImageSize()
	if !req.Image.Shape.Equal(core.Shape{1, 3, h, w}) {
		return nil, fmt.Errorf("rq edit: image %v, want [1, 3, %d, %d]", req.Image.Shape, h, w)
	}
	o := core.NewOps(g.b)
	x := o.Upload(req.Image)
	codes := g.p.V.Codes(o, x)
	o.Free(x)
	if err := o.Err(); err != nil {
		return nil, err
	}
	prefix := PrefixOf(codes, keep)
	// The same kept codes for every label of the batch.
	for i, ids := range prefix {
		one := append([]int(nil), ids...)
		for range len(req.Labels) - 1 {
			prefix[i] = append(prefix[i], one...)
		}
	}
	r := req.Request
	r.Prefix = prefix
	return g.Generate(ctx, r, onStep)
}
