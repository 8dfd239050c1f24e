package flexvar

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/edit"
	"github.com/webvar/webvar/core/gen"
)

// Defaults are a model's default settings.
type Defaults struct {
	CFG      float64
	TopK     int
	TopP     float64
	Schedule []int // square sides; the official 256 px schedule for the releases
	CFGMode  CFGMode
	MaxPN    int
}

// OfficialDefaults are FlexVAR's published settings (cfg 2.5, top-k 900, top-p 0.95, the 10-step
// schedule, linear CFG, max_pn 16).
var OfficialDefaults = Defaults{CFG: 2.5, TopK: 900, TopP: 0.95, Schedule: DefaultSchedule, CFGMode: CFGLinear, MaxPN: DefaultMaxPN}

// Settings declares FlexVAR's knobs for a model predicting v codes.
func (d Defaults) Settings(v int) []gen.Setting {
	return append(gen.SamplingSettings(d.CFG, d.TopK, d.TopP, v),
		gen.Setting{Name: "schedule", Label: "steps", Help: "grid side per step, increasing from 1: fewer steps are faster, the last side sets the image size (16 px a token for the releases)",
			Kind: gen.List, Default: gen.JoinInts(d.Schedule), Presets: SchedulePresets(d.Schedule)},
		gen.Setting{Name: "aspect", Label: "aspect", Help: "width:height of the image (1:1 is the official square schedule; others resize every step's grid)",
			Kind: gen.Text, Default: "1:1", Presets: []string{"1:1", "4:3", "3:4", "16:9", "9:16"}},
		gen.Setting{Name: "cfg-mode", Label: "cfg mode", Help: "linear: guidance grows with the step (FlexVAR); llamagen: constant",
			Kind: gen.Choice, Default: d.CFGMode.String(), Choices: []string{"linear", "llamagen"}},
		gen.Setting{Name: "max-pn", Label: "max pn", Help: "steps with a larger side use full guidance and greedy tokens",
			Kind: gen.Int, Default: fmt.Sprint(d.MaxPN), Min: 1, Max: 64, Step: 1})
}

// SchedulePresets are schedules a front end offers beside the model's default: about half the steps to
// the same size (faster), more steps (for the official schedule the spec's 13-step one with 7, 9, 12 and
// 14; otherwise the midpoints), and larger images than the training size (for the official schedule
// the spec's 512 px ending ..., 16, 23, 32).
func SchedulePresets(def []int) []string {
	out := []string{gen.JoinInts(def)}
	if len(def) > 4 {
		// Every other step, always keeping the first and the last.
		var few []int
		for i, s := range def {
			if i == 0 || i == len(def)-1 || i%2 == 0 {
				few = append(few, s)
			}
		}
		out = append(out, gen.JoinInts(few))
	}
	if slices.Equal(def, DefaultSchedule) {
		return append(out, "1,2,3,4,5,6,7,8,9,10,12,13,14,16", "1,2,3,4,5,6,8,10,13,16,23,32")
	}
	var more []int
	for i, s := range def {
		if i > 0 && s-def[i-1] >= 2 {
			more = append(more, (s+def[i-1])/2)
		}
		more = append(more, s)
	}
	if len(more) > len(def) {
		out = append(out, gen.JoinInts(more))
	}
	last := def[len(def)-1]
	return append(out, gen.JoinInts(append(append([]int(nil), def...), (3*last+1)/2, 2*last)))
}

// ParseAspect reads "W:H" (or "WxH").
func ParseAspect(s string) (w, h int, err error) {
	s = strings.TrimSpace(s)
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == 'x' || r == '/' })
	if len(parts) == 2 {
		w, err1 := strconv.Atoi(parts[0])
		h, err2 := strconv.Atoi(parts[1])
		if err1 == nil && err2 == nil && w > 0 && h > 0 {
			return w, h, nil
		}
	}
	return 0, 0, fmt.Errorf("aspect %q: want width:height, e.g. 4:3", s)
}

// ScheduleOf is the grid schedule the settings ask for: the square sides reshaped to the aspect ratio.
func ScheduleOf(s gen.Settings) ([]Grid, error) {
	sides := s.Ints("schedule")
	if len(sides) == 0 {
		return nil, fmt.Errorf("schedule: empty")
	}
	w, h, err := ParseAspect(s["aspect"])
	if err != nil {
		return nil, err
	}
	if w == h {
		sched := Square(sides)
		return sched, CheckSchedule(sched)
	}
	return Aspect(sides, w, h)
}

// Generator is the pipeline on backend b as a family-neutral gen.Generator with the model's defaults.
func (p *Pipeline) Generator(b core.Backend, d Defaults) gen.Generator {
	if d.Schedule == nil {
		d.Schedule = DefaultSchedule
	}
	if d.MaxPN == 0 {
		d.MaxPN = DefaultMaxPN
	}
	return &generator{p: p, b: b, d: d}
}

type generator struct {
	p *Pipeline
	b core.Backend
	d Defaults
}

func (g *generator) Info() gen.Info {
	c, t := g.p.VAR.Config(), g.p.VAE.Config()
	h, w := g.p.ImageSize(Square(g.d.Schedule))
	return gen.Info{Family: "flexvar", Classes: c.Classes, StepNoun: "step", Steps: len(g.d.Schedule), Reroll: true,
		Summary: fmt.Sprintf("FlexVAR depth %d, width %d, %d heads, %d classes, tokenizer V=%d D=%d (%d px a token), default steps %v (%dx%d images)",
			c.Depth, c.C, c.Heads, c.Classes, t.V, t.Cvae, t.Downsample(), g.d.Schedule, w, h)}
}

func (g *generator) Settings() []gen.Setting { return g.d.Settings(g.p.VAR.Config().V) }

func (g *generator) ImageSize(s gen.Settings) (int, int, error) {
	v, err := gen.Values(g.Settings(), s)
	if err != nil {
		return 0, 0, err
	}
	sched, err := ScheduleOf(v)
	if err != nil {
		return 0, 0, err
	}
	h, w := g.p.ImageSize(sched)
	return h, w, nil
}

// Request maps family-neutral settings to a FlexVAR request.
func (g *generator) Request(req gen.Request) (Request, error) {
	s, err := gen.Values(g.Settings(), req.Settings)
	if err != nil {
		return Request{}, err
	}
	sched, err := ScheduleOf(s)
	if err != nil {
		return Request{}, err
	}
	mode, err := ParseCFGMode(s["cfg-mode"])
	if err != nil {
		return Request{}, err
	}
	if req.RandomAfter != 0 {
		return Request{}, fmt.Errorf("random-after: FlexVAR predicts the whole image at every step; it has no randomize-after experiment")
	}
	return Request{Labels: req.Labels, Seed: req.Seed, Schedule: sched, CFG: s.Float("cfg"), CFGMode: mode,
		MaxPN: s.Int("max-pn"), TopK: s.Int("top-k"), TopP: s.Float("top-p"), Previews: req.Previews, Prefix: req.Prefix}, nil
}

func (g *generator) Generate(ctx context.Context, req gen.Request, onStep func(gen.Step) error) (*gen.Result, error) {
	return g.generate(ctx, req, nil, onStep)
}

// EditGrid is the grid the settings' schedule ends in.
func (g *generator) EditGrid(s gen.Settings) (int, int, error) {
	v, err := gen.Values(g.Settings(), s)
	if err != nil {
		return 0, 0, err
	}
	sched, err := ScheduleOf(v)
	if err != nil {
		return 0, 0, err
	}
	last := sched[len(sched)-1]
	return last.H, last.W, nil
}

// Edit is image-to-image (EditOf) at the settings' schedule.
func (g *generator) Edit(ctx context.Context, req gen.EditRequest, onStep func(gen.Step) error) (*gen.Result, error) {
	v, err := gen.Values(g.Settings(), req.Settings)
	if err != nil {
		return nil, err
	}
	sched, err := ScheduleOf(v)
	if err != nil {
		return nil, err
	}
	e, err := g.p.EditOf(core.NewOps(g.b), req.Image, sched, req.Keep, req.KeepSteps)
	if err != nil {
		return nil, err
	}
	return g.generate(ctx, req.Request, e, onStep)
}

func (g *generator) generate(ctx context.Context, req gen.Request, e *edit.Edit, onStep func(gen.Step) error) (*gen.Result, error) {
	r, err := g.Request(req)
	if err != nil {
		return nil, err
	}
	r.Edit = e
	var cb func(StepEvent) error
	if onStep != nil {
		cb = func(ev StepEvent) error {
			label := fmt.Sprintf("step %d/%d (%dx%d)", ev.Step+1, ev.Steps, ev.Grid.H, ev.Grid.W)
			if ev.Greedy {
				label += ", greedy"
			}
			return onStep(gen.Step{Index: ev.Step, Count: ev.Steps, Label: label, GridH: ev.Grid.H, GridW: ev.Grid.W, Tokens: ev.Tokens,
				Preview: ev.Preview, Elapsed: ev.Elapsed, Decode: ev.Decode})
		}
	}
	res, err := g.p.Generate(ctx, g.b, r, cb)
	if err != nil {
		return nil, err
	}
	return &gen.Result{Images: res.Images, Tokens: res.Tokens}, nil
}
