// Package gen is the family-neutral face of every generator webvar runs (VAR, FlexVAR, and the families
// to come): class labels and settings in, images out, with one event per step and cancellation through
// the context. Front ends (the command line, the browser app's two UIs, the preview window, the Go API)
// talk to a Generator only; each family says what its steps are called and which settings it takes, so a
// front end builds its controls from Settings instead of knowing the family.
package gen

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/webvar/webvar/core"
)

// Kind is the type of a setting's value.
type Kind int

const (
	Float  Kind = iota // a number
	Int                // a whole number
	Bool               // on or off
	Choice             // one of Setting.Choices
	List               // a comma-separated list of whole numbers (FlexVAR's step schedule)
	Text               // free text the family parses (e.g. an aspect ratio "4:3")
)

// Setting describes one knob of a family: its name (the flag and URL parameter: "cfg", "top-k"), a
// label and help for front ends, its kind, its default (as text, the way a flag or URL writes it) and,
// for numbers, a suggested range for a slider.
type Setting struct {
	Name, Label, Help string
	Kind              Kind
	Default           string
	Min, Max, Step    float64  // Float and Int: the slider's range (Min == Max: no slider)
	Choices           []string // Choice
	// Presets are suggested values a front end may offer to step through (FlexVAR's schedules and
	// aspect ratios, top-k's usual values), in order; any other valid value is accepted too.
	Presets []string
}

// Settings are values by setting name, as text. A missing name takes the setting's default.
type Settings map[string]string

// Clone copies s.
func (s Settings) Clone() Settings {
	out := make(Settings, len(s))
	for k, v := range s {
		out[k] = v
	}
	return out
}

// Values resolves settings against their declarations: every declared name gets a value (given, else the
// default), each checked against its kind; an unknown name is an error naming it.
func Values(decl []Setting, given Settings) (Settings, error) {
	out := Settings{}
	known := map[string]Setting{}
	for _, d := range decl {
		known[d.Name] = d
		out[d.Name] = d.Default
	}
	for k, v := range given {
		d, ok := known[k]
		if !ok {
			names := make([]string, 0, len(decl))
			for _, d := range decl {
				names = append(names, d.Name)
			}
			return nil, fmt.Errorf("unknown setting %q (this model takes %s)", k, strings.Join(names, ", "))
		}
		if err := d.Check(v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// Check reports whether v is a valid value of the setting's kind.
func (d Setting) Check(v string) error {
	var err error
	switch d.Kind {
	case Float:
		_, err = strconv.ParseFloat(v, 64)
	case Int:
		_, err = strconv.Atoi(v)
	case Bool:
		_, err = strconv.ParseBool(v)
	case Choice:
		for _, c := range d.Choices {
			if v == c {
				return nil
			}
		}
		return fmt.Errorf("%s %q: want one of %s", d.Name, v, strings.Join(d.Choices, ", "))
	case List:
		_, err = ParseInts(v)
	}
	if err != nil {
		return fmt.Errorf("%s %q: %v", d.Name, v, err)
	}
	return nil
}

// Float returns a Float setting (Values has checked it).
func (s Settings) Float(name string) float64 { f, _ := strconv.ParseFloat(s[name], 64); return f }

// Int returns an Int setting.
func (s Settings) Int(name string) int { i, _ := strconv.Atoi(s[name]); return i }

// Bool returns a Bool setting.
func (s Settings) Bool(name string) bool { b, _ := strconv.ParseBool(s[name]); return b }

// Ints returns a List setting (nil when empty).
func (s Settings) Ints(name string) []int { v, _ := ParseInts(s[name]); return v }

// ParseInts parses "1,2,3" (spaces allowed; empty: nil).
func ParseInts(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// Request is one generation.
type Request struct {
	Labels   []int // class per image, in [0, Info.Classes)
	Seed     uint64
	Settings Settings // family settings by name (Generator.Settings); missing ones take defaults
	Previews bool     // fill Step.Preview for every step, not only the last
	// Prefix optionally fixes the tokens of the first len(Prefix) steps (each B*n ids, as Result.Tokens
	// holds them) instead of sampling them: "reroll from step k" keeps a finished image's first steps.
	Prefix [][]int
	// RandomAfter, when > 0, replaces the tokens of every step from index RandomAfter on with uniformly
	// random ones ("randomize after scale k": how much of the image the first steps decide). Only
	// families whose Info.RandomAfter says so take it.
	RandomAfter int
}

// Step reports a finished step of a generation.
type Step struct {
	Index, Count int
	Label        string // "scale 3/10", "step 4/6 (5x5)": what the family calls it, for status lines
	GridH, GridW int    // the step's token grid (0 for families without one)
	Tokens       []int  // the step's own tokens, B*n ids image-major (nil for families without tokens)
	// Preview is the image so far, [B, 3, H, W] in [0, 1]: every step with Request.Previews, always at
	// the last step (the final image).
	Preview *core.HostTensor
	Elapsed time.Duration // since the start of the generation
	Decode  time.Duration // the part of this step spent making its image
}

// Result is a finished generation.
type Result struct {
	Images core.HostTensor // [B, 3, H, W] in [0, 1]
	Tokens [][]int         // per step: B*n ids, image-major
	// Latents are the final continuous tokens of families without token ids (MAR): [B, L, Ct].
	Latents *core.HostTensor
}

// Info describes a loaded model.
type Info struct {
	Family  string // "var", "flexvar"
	Classes int
	// StepNoun names a step in status lines ("scale", "step"); Steps is the step count at the default
	// settings.
	StepNoun string
	Steps    int
	Summary  string // architecture in one line, for logs
	// RandomAfter says the family takes Request.RandomAfter (VAR: later scales refine a residual, so
	// random ones show what the first scales decided; FlexVAR's steps each predict the whole image, so
	// it has no such experiment).
	RandomAfter bool
	// Reroll says the family takes Request.Prefix ("reroll from step k" keeps the first steps' token
	// ids): VAR and FlexVAR; MAR's continuous tokens have no ids to keep.
	Reroll bool
}

// SamplingSettings declares the token-sampling knobs every token family shares (cfg, top-k, top-p)
// with the model's defaults; v is the vocabulary size (top-k's range).
func SamplingSettings(cfg float64, topK int, topP float64, v int) []Setting {
	return []Setting{
		{Name: "cfg", Label: "cfg", Help: "classifier-free guidance strength (0: off)", Kind: Float,
			Default: fmt.Sprint(cfg), Min: 0, Max: 10, Step: 0.25},
		{Name: "top-k", Label: "top-k", Help: "keep the k most likely tokens (0: off, 1: greedy)", Kind: Int,
			Default: fmt.Sprint(topK), Min: 0, Max: float64(v), Step: 1, Presets: TopKPresets},
		{Name: "top-p", Label: "top-p", Help: "nucleus sampling mass (0: off)", Kind: Float,
			Default: fmt.Sprint(topP), Min: 0, Max: 1, Step: 0.01},
	}
}

// JoinInts writes a List setting's value: "1,2,3" (ParseInts reads it back).
func JoinInts(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}

// TopKPresets are the top-k values a front end steps through: greedy, a few small ones, the official 900
// and off (0, last).
var TopKPresets = []string{"1", "2", "5", "10", "50", "100", "300", "600", "900", "0"}

// Generator is a loaded model of any family on one backend.
type Generator interface {
	Info() Info
	// Settings declares the knobs the family takes, with the model's defaults.
	Settings() []Setting
	// ImageSize is the size of the images the given settings produce.
	ImageSize(s Settings) (h, w int, err error)
	// Generate runs a request. onStep (may be nil) is called once per step, in order; an error from it
	// stops the generation and is returned, as does the context's cancellation (checked between steps).
	Generate(ctx context.Context, req Request, onStep func(Step) error) (*Result, error)
}

// Noter is an optional ability of a Generator: Notes explains what it will do differently from what the
// settings ask (a preview mode the model cannot make, say), for front ends to show.
type Noter interface {
	Notes(s Settings) []string
}

// LatentRows is image 0's Latents as L rows of Ct values (raster order), nil without latents: what
// `webvar generate -tokens` writes and the page exposes for continuous-token families.
func (r *Result) LatentRows() [][]float32 {
	l := r.Latents
	if l == nil || len(l.Shape) != 3 {
		return nil
	}
	rows := make([][]float32, l.Shape[1])
	for i := range rows {
		rows[i] = l.Data[i*l.Shape[2] : (i+1)*l.Shape[2]]
	}
	return rows
}

// EditRequest is an image-to-image generation (Editor): an input image and what of it to keep.
type EditRequest struct {
	// Request's labels may include the class count, the null class (in-painting without a class).
	Request
	// Image is the input, [1, 3, H, W] in [-1, 1], at the size ImageSize gives for the settings.
	Image core.HostTensor
	// Keep is a keep-mask on the last step's token grid (EditGrid; row-major, 1 = keep the input's token);
	// the family resizes it to every step.
	Keep []float32
	// KeepSteps keeps the first steps whole (refinement: they fix the layout, the later steps are
	// generated anew).
	KeepSteps int
}

// Editor is a Generator that also edits images (VAR's zero-shot editing, FlexVAR's image-to-image).
type Editor interface {
	Generator
	// EditGrid is the last step's token grid for the settings (the grid EditRequest.Keep is on).
	EditGrid(s Settings) (h, w int, err error)
	// Edit generates with the input image's tokens kept where the request says.
	Edit(ctx context.Context, req EditRequest, onStep func(Step) error) (*Result, error)
}

// DepthViewer is an optional ability of a Generator whose tokens at each step are residual codes that
// add up (RQ's code depths): the image of the first k depths of a finished result, coarse to fine,
// without generating again (one decode).
type DepthViewer interface {
	Generator
	// Depths is the number of code depths D: each step of Result.Tokens holds B*D ids, image-major.
	Depths() int
	// DecodeDepths is the images of r's codes summed over depths 0..k-1, k in 1..Depths(), in
	// Result.Images' layout ([B, 3, H, W] in [0, 1]); k = Depths() gives r.Images exactly. Only
	// r.Tokens is read.
	DecodeDepths(r *Result, k int) (core.HostTensor, error)
}
