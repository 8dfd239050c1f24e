// Package uistate is the preview UI without the drawing: the controls, what a click or key does, the
// varmodel.Request a run uses, loading progress and the per-scale results. It imports no graphics
// library, so everything here is tested without a display; package ui draws it with ebiten.
package uistate

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math/rand/v2"
	"time"

	"github.com/webvar/webvar/core/varmodel"
)

// Phase is where the app is.
type Phase int

const (
	Loading    Phase = iota // weights are being read; no model yet
	Idle                    // a model is loaded and nothing runs
	Generating              // a run is in flight
	Failed                  // loading failed: nothing but the message is left to show
	Stopped                 // loading was cancelled: Generate (shown as "Load") starts it again
)

// Settings are the sampling controls.
type Settings struct {
	Class      int
	Seed       uint64
	CFG        float64
	TopK       int
	TopP       float64
	MoreSmooth bool
}

// Defaults are the official sampling settings (demo_sample.ipynb: cfg 4, top-k 900, top-p 0.95).
func Defaults() Settings { return Settings{CFG: 4, TopK: 900, TopP: 0.95} }

// Step sizes of the +/- steppers.
const (
	cfgStep  = 0.5
	cfgMax   = 20
	topPStep = 0.05
)

// topKSteps are the values the top-k stepper walks through: greedy, a few small ones, then the official
// 900 and "off" (0 means off, shown last).
var topKSteps = []int{1, 2, 5, 10, 50, 100, 300, 600, 900, 0}

// LoadProgress is the weights download as the loader reports it.
type LoadProgress struct {
	BytesDone, BytesTotal int64         // BytesTotal 0: unknown (checkpoints read without progress)
	Elapsed               time.Duration // since loading began
}

// Rate is the average download rate in MB/s (0 before any time has passed).
func (p LoadProgress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.BytesDone) / 1e6 / p.Elapsed.Seconds()
}

// ETA is the remaining time at the average rate so far; ok is false when it cannot be estimated yet.
func (p LoadProgress) ETA() (d time.Duration, ok bool) {
	if p.BytesTotal <= 0 || p.BytesDone <= 0 || p.Elapsed <= 0 {
		return 0, false
	}
	left := float64(p.BytesTotal - p.BytesDone)
	return time.Duration(left / float64(p.BytesDone) * float64(p.Elapsed)), true
}

// Text is the one-line progress report: "12.3 / 45.6 MB (27%), 3.2 MB/s, ETA 10s".
func (p LoadProgress) Text() string {
	if p.BytesTotal <= 0 {
		return fmt.Sprintf("loading checkpoints... %.1fs", p.Elapsed.Seconds())
	}
	s := fmt.Sprintf("%.1f / %.1f MB (%d%%), %.1f MB/s", float64(p.BytesDone)/1e6, float64(p.BytesTotal)/1e6,
		100*p.BytesDone/p.BytesTotal, p.Rate())
	if eta, ok := p.ETA(); ok {
		s += fmt.Sprintf(", ETA %s", eta.Round(100*time.Millisecond))
	}
	return s
}

// Fraction is BytesDone / BytesTotal in [0, 1] (0 when unknown).
func (p LoadProgress) Fraction() float64 {
	if p.BytesTotal <= 0 {
		return 0
	}
	return min(1, float64(p.BytesDone)/float64(p.BytesTotal))
}

// ModelInfo is what the UI needs to know about a loaded model.
type ModelInfo struct {
	Classes    int
	ClassNames []string // nil or one per class (weights metadata)
	PatchNums  []int
	ImageSize  int // output side in pixels
	// LinearPreview says the model has a fitted linear preview map (varmodel.Pipeline.LinearPreview).
	LinearPreview bool
}

// ScaleResult is one finished scale of the current run.
type ScaleResult struct {
	Scale, PN int
	Took      time.Duration // this scale alone
	Preview   *image.NRGBA  // the image decoded from f_hat after this scale (nil without previews)
}

// Run is the current or last generation.
type Run struct {
	ID       int // increases per started run: drawing code caches per-run images by it
	Request  varmodel.Request
	Kind     string // "generate", "reroll from scale k", "randomize after scale k"
	Scales   []ScaleResult
	Tokens   [][]int // per scale, once the run finished: the prefix of a later reroll
	Finished bool    // completed successfully
	Err      error   // failure or cancellation
	Total    time.Duration
}

// CommandKind says what the driver must do after an action.
type CommandKind int

const (
	None   CommandKind = iota
	Start              // start Command.Request in a goroutine
	Cancel             // cancel the run in flight
	Save               // save the current image (Command.Name is a suggested file name)
	Load               // (re)start loading the model: after a cancelled download
)

// Command is the side effect an action asks of the driver (ebiten game, tests).
type Command struct {
	Kind    CommandKind
	Request varmodel.Request
	Name    string
}

// State is the whole UI model. The zero value is not usable: use New.
type State struct {
	Phase    Phase
	Progress LoadProgress
	Model    ModelInfo
	Settings Settings
	// K is the scale count the reroll and randomize buttons keep (1..len(PatchNums)-1).
	K       int
	Run     *Run
	Message string // status line: errors, "saved ...", hints
	// Rand draws seeds for the dice, reroll and randomize (a field, not a package global, so tests fix it).
	Rand   func() uint64
	nextID int
	// typed is the class number being typed (TypeDigit) and typedAt when its last digit came.
	typed   int
	typedAt time.Time
}

// New is the state before the model has loaded, starting from the given settings.
func New(s Settings) *State {
	return &State{Phase: Loading, Settings: s, Rand: rand.Uint64}
}

// OnProgress records a loader report.
func (s *State) OnProgress(p LoadProgress) {
	if s.Phase == Loading {
		s.Progress = p
	}
}

// OnLoaded switches to Idle with model m, to Stopped when err is the cancellation (context.Canceled) of a
// load the user stopped, or to Failed with any other err. Settings outside the model's range are clamped
// so that Generate always builds a valid request.
func (s *State) OnLoaded(m ModelInfo, err error) {
	if errors.Is(err, context.Canceled) {
		s.Phase = Stopped
		s.Message = "download cancelled: press Load to go on"
		if s.Progress.BytesTotal > 0 {
			s.Message = fmt.Sprintf("download cancelled at %.1f of %.1f MB: press Load to go on",
				float64(s.Progress.BytesDone)/1e6, float64(s.Progress.BytesTotal)/1e6)
		}
		return
	}
	if err != nil {
		s.Phase = Failed
		s.Message = "loading failed: " + err.Error()
		return
	}
	s.Phase, s.Model = Idle, m
	if len(m.ClassNames) != m.Classes {
		s.Model.ClassNames = nil
	}
	s.Settings.Class = min(max(s.Settings.Class, 0), m.Classes-1)
	if s.K == 0 {
		s.K = max(1, len(m.PatchNums)/2)
	}
	s.K = min(max(s.K, 1), max(1, len(m.PatchNums)-1))
	s.Message = fmt.Sprintf("%d classes, %d scales, %dx%d images", m.Classes, len(m.PatchNums), m.ImageSize, m.ImageSize)
}

// ClassLabel is "207: golden retriever", or "class 207" without names.
func (s *State) ClassLabel() string {
	c := s.Settings.Class
	if s.Model.ClassNames != nil {
		return fmt.Sprintf("%d: %s", c, s.Model.ClassNames[c])
	}
	return fmt.Sprintf("class %d", c)
}

// TopKLabel shows top-k 0 as "off".
func (s *State) TopKLabel() string {
	if s.Settings.TopK == 0 {
		return "off"
	}
	return fmt.Sprint(s.Settings.TopK)
}

// TopPLabel shows top-p 0 as "off".
func (s *State) TopPLabel() string {
	if s.Settings.TopP == 0 {
		return "off"
	}
	return fmt.Sprintf("%.2f", s.Settings.TopP)
}

// Request is the varmodel request of the current settings: one image, with the previews the window
// shows as each scale finishes (varmodel.InteractivePreviews: linear ones for a model with a fitted map,
// which cost next to nothing; else fast ones for large images, where full-resolution previews would cost
// more than the transformer).
func (s *State) Request() varmodel.Request {
	st := s.Settings
	return varmodel.Request{Labels: []int{st.Class}, CFG: st.CFG, TopK: st.TopK, TopP: st.TopP,
		MoreSmooth: st.MoreSmooth, Seed: st.Seed, Previews: varmodel.InteractivePreviews(s.Model.ImageSize, s.Model.LinearPreview)}
}

// Enabled says whether an action does anything now (disabled buttons are drawn dimmed).
func (s *State) Enabled(a Action) bool {
	switch a {
	case ActCancel:
		return s.Phase == Generating || s.Phase == Loading
	case ActSave:
		return s.Run != nil && s.Run.Finished
	case ActReroll, ActRandomize:
		return s.Phase == Idle && s.Run != nil && s.Run.Finished && len(s.Model.PatchNums) > 1
	case ActGenerate:
		return s.Phase == Idle || s.Phase == Stopped
	}
	// Settings can change while loading or generating: they apply to the next run.
	return s.Phase != Failed
}

// Apply performs a user action and returns what the driver must do.
func (s *State) Apply(a Action) Command {
	if !s.Enabled(a) {
		return Command{}
	}
	st := &s.Settings
	switch a {
	case ActClassPrev, ActClassNext:
		if n := s.Model.Classes; n > 0 {
			d := 1
			if a == ActClassPrev {
				d = n - 1
			}
			st.Class = (st.Class + d) % n
		}
	case ActSeedDown:
		st.Seed--
	case ActSeedUp:
		st.Seed++
	case ActDice:
		st.Seed = s.Rand() % 1_000_000 // short enough to read and type back into -seed
	case ActCFGDown:
		st.CFG = max(0, st.CFG-cfgStep)
	case ActCFGUp:
		st.CFG = min(cfgMax, st.CFG+cfgStep)
	case ActTopKDown, ActTopKUp:
		st.TopK = stepTopK(st.TopK, a == ActTopKUp)
	case ActTopPDown:
		st.TopP = roundTo(max(0, st.TopP-topPStep), topPStep)
	case ActTopPUp:
		st.TopP = roundTo(min(1, st.TopP+topPStep), topPStep)
	case ActMoreSmooth:
		st.MoreSmooth = !st.MoreSmooth
	case ActKDown:
		s.K = max(1, s.K-1)
	case ActKUp:
		s.K = min(max(1, len(s.Model.PatchNums)-1), s.K+1)
	case ActGenerate:
		if s.Phase == Stopped {
			s.Phase = Loading
			s.Message = "loading again..."
			return Command{Kind: Load}
		}
		return s.start(s.Request(), "generate")
	case ActReroll:
		// Keep the first K scales of the last run, resample the rest with a new seed.
		st.Seed = s.Rand() % 1_000_000
		req := s.Request()
		req.Prefix = s.Run.Tokens[:s.K]
		return s.start(req, fmt.Sprintf("reroll from scale %d", s.K))
	case ActRandomize:
		// Keep the first K scales of the last run; uniformly random tokens after them.
		st.Seed = s.Rand() % 1_000_000
		req := s.Request()
		req.Prefix = s.Run.Tokens[:s.K]
		req.RandomAfter = s.K
		return s.start(req, fmt.Sprintf("randomize after scale %d", s.K))
	case ActCancel:
		s.Message = "cancelling..."
		if s.Phase == Loading {
			s.Message = "cancelling the download..."
		}
		return Command{Kind: Cancel}
	case ActSave:
		r := s.Run.Request
		return Command{Kind: Save, Name: fmt.Sprintf("webvar_class%d_seed%d.png", r.Labels[0], r.Seed)}
	}
	return Command{}
}

func (s *State) start(req varmodel.Request, kind string) Command {
	s.nextID++
	s.Phase = Generating
	s.Run = &Run{ID: s.nextID, Request: req, Kind: kind}
	s.Message = kind + "..."
	return Command{Kind: Start, Request: req}
}

// OnScale records a finished scale of run id (events of an older run are ignored). elapsed is since the
// start of the run (varmodel.ScaleEvent.Elapsed).
func (s *State) OnScale(id int, ev varmodel.ScaleEvent, preview *image.NRGBA) {
	if s.Run == nil || s.Run.ID != id {
		return
	}
	took := ev.Elapsed - s.Run.Total
	s.Run.Total = ev.Elapsed
	s.Run.Scales = append(s.Run.Scales, ScaleResult{Scale: ev.Scale, PN: ev.PN, Took: took, Preview: preview})
	s.Message = fmt.Sprintf("%s: scale %d/%d (%dx%d) took %s", s.Run.Kind, ev.Scale+1, ev.Scales, ev.PN, ev.PN,
		took.Round(time.Millisecond))
}

// OnDone ends run id with its tokens or an error (context.Canceled after Cancel).
func (s *State) OnDone(id int, tokens [][]int, err error) {
	if s.Run == nil || s.Run.ID != id {
		return
	}
	s.Phase = Idle
	if err != nil {
		s.Run.Err = err
		s.Message = fmt.Sprintf("%s stopped: %v", s.Run.Kind, err)
		return
	}
	s.Run.Finished, s.Run.Tokens = true, tokens
	s.Message = fmt.Sprintf("%s: %d scales in %s", s.Run.Kind, len(s.Run.Scales), s.Run.Total.Round(time.Millisecond))
}

// OnSaved reports the result of a Save command.
func (s *State) OnSaved(path string, err error) {
	if err != nil {
		s.Message = "save failed: " + err.Error()
		return
	}
	s.Message = "saved " + path
}

// Latest is the most recent preview of the current run, or nil.
func (s *State) Latest() *image.NRGBA {
	if s.Run == nil {
		return nil
	}
	for i := len(s.Run.Scales) - 1; i >= 0; i-- {
		if p := s.Run.Scales[i].Preview; p != nil {
			return p
		}
	}
	return nil
}

// stepTopK moves to the next larger or smaller value of topKSteps; 0 (off) counts as above every k, and a
// k between steps moves to the neighbouring step in that direction.
func stepTopK(k int, up bool) int {
	steps := topKSteps[:len(topKSteps)-1] // without the trailing 0 (off)
	if up {
		if k == 0 {
			return 0
		}
		for _, v := range steps {
			if v > k {
				return v
			}
		}
		return 0
	}
	if k == 0 {
		return steps[len(steps)-1]
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i] < k {
			return steps[i]
		}
	}
	return steps[0]
}

func roundTo(x, step float64) float64 {
	n := x / step
	return float64(int64(n+0.5)) * step
}

// typeWindow is how long after a digit the next one still extends the same number.
const typeWindow = 1500 * time.Millisecond

// TypeDigit handles a digit key at time now: digits typed within typeWindow of each other form a class
// number ("2", "0", "7" selects class 207), the way to reach one of ImageNet's 1000 classes without
// stepping. A number past the model's classes starts over from this digit.
func (s *State) TypeDigit(d int, now time.Time) {
	if d < 0 || d > 9 || s.Model.Classes == 0 || s.Phase == Failed {
		return
	}
	n := d
	if !s.typedAt.IsZero() && now.Sub(s.typedAt) <= typeWindow {
		n = s.typed*10 + d
	}
	if n >= s.Model.Classes {
		n = d
	}
	s.typedAt = now
	s.typed = n
	if n < s.Model.Classes {
		s.Settings.Class = n
		s.Message = "class " + s.ClassLabel() + " (typed)"
	}
}
