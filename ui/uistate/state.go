// Package uistate is the app without the drawing, shared by every interactive front end (the native
// preview window and the browser's canvas UI, both drawn by package ui with ebiten, and the browser's
// HTML controls, wasm/): the controls, what a click or key does, the gen.Request a run uses, loading
// progress, the per-step results and the name a saved image gets. Because all three act through this
// one state, they cannot disagree. It works for every model family: the family's settings
// (gen.Generator.Settings) become controls. It imports no graphics library, so everything here is
// tested without a display.
package uistate

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/weights"
)

// Phase is where the app is.
type Phase int

const (
	Loading    Phase = iota // weights are being read; no model yet
	Idle                    // a model is loaded and nothing runs
	Generating              // a run is in flight
	Failed                  // loading failed: nothing but the message is left to show
	Stopped                 // loading was cancelled or failed on the network, or the GPU device was lost: Generate (shown as "Load") loads again
)

// Settings are the controls' values: the class and seed, and the family's settings by name (as text,
// gen.Settings); a name the model does not take is dropped when it loads.
type Settings struct {
	Class  int
	Seed   uint64
	Values gen.Settings
}

// Defaults are settings that take every family setting from the model: class 0, seed 0.
func Defaults() Settings { return Settings{Values: gen.Settings{}} }

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
	Family     string
	Classes    int
	ClassNames []string // nil or one per class (weights metadata)
	StepNoun   string   // "scale", "step"
	Steps      int      // at the model's default settings
	// Settings are the family's knobs with the model's defaults (gen.Generator.Settings).
	Settings []gen.Setting
	// RandomAfter says the family has the randomize-after experiment (gen.Info.RandomAfter).
	RandomAfter bool
	// Reroll says the family can keep a run's first steps (gen.Info.Reroll).
	Reroll bool
	// Editor says the model edits images (gen.Editor): EditModes lists how.
	Editor bool
	// Size reports the image size settings give (gen.Generator.ImageSize); nil: not known.
	Size func(gen.Settings) (h, w int, err error)
	// Depths is the code depth of a family whose codes add up (gen.DepthViewer, RQ): a finished image
	// can be shown from its first k depths. 0: no depth view.
	Depths int
}

// InfoOf describes a loaded generator with its class names (nil: numbers are shown).
func InfoOf(g gen.Generator, classNames []string) ModelInfo {
	i := g.Info()
	return ModelInfo{Family: i.Family, Classes: i.Classes, ClassNames: classNames, StepNoun: i.StepNoun, Steps: i.Steps,
		Settings: g.Settings(), RandomAfter: i.RandomAfter, Reroll: i.Reroll, Size: g.ImageSize, Editor: isEditor(g),
		Depths: depthsOf(g)}
}

// depthsOf is a gen.DepthViewer's depth count (0 for other generators).
func depthsOf(g gen.Generator) int {
	if dv, ok := g.(gen.DepthViewer); ok {
		return dv.Depths()
	}
	return 0
}

// Setting returns the declaration of the named setting.
func (m ModelInfo) Setting(name string) (gen.Setting, int, bool) {
	for i, d := range m.Settings {
		if d.Name == name {
			return d, i, true
		}
	}
	return gen.Setting{}, -1, false
}

// ScaleResult is one finished step of the current run.
type ScaleResult struct {
	Scale        int
	GridH, GridW int           // the step's token grid
	Label        string        // the family's words for it ("scale 3/4 (3x3)")
	Took         time.Duration // this step alone
	Preview      *image.NRGBA  // the image after this step (nil without previews)
}

// Run is the current or last generation.
type Run struct {
	ID       int // increases per started run: drawing code caches per-run images by it
	Request  gen.Request
	Kind     string // "generate", "reroll from scale k", "randomize after scale k"
	Steps    int    // the run's step count (from its events)
	Scales   []ScaleResult
	Tokens   [][]int // per step, once the run finished: the prefix of a later reroll
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
	// ShowDepth: decode the last run's image from its first Command.Depth code depths
	// (gen.DepthViewer.DecodeDepths, off the UI thread) and report it with OnDepth.
	ShowDepth
)

// Command is the side effect an action asks of the driver (ebiten game, the HTML page, tests).
type Command struct {
	Kind    CommandKind
	Request gen.Request
	Name    string
	// Edit, with Start, makes the run an edit of the driver's input image (EditSpec.Request builds it).
	Edit *EditSpec
	// Depth, with ShowDepth, is the depth count k to show (1..ModelInfo.Depths).
	Depth int
}

// State is the whole UI model. The zero value is not usable: use New.
type State struct {
	Phase    Phase
	Progress LoadProgress
	Model    ModelInfo
	Settings Settings
	// K is the step count the reroll and randomize buttons keep (1..steps-1).
	K       int
	Run     *Run
	Message string // status line: errors, "saved ...", hints
	// Rand draws seeds for the dice, reroll and randomize (a field, not a package global, so tests fix it).
	Rand func() uint64
	// Edit is how the next edit keeps the input image; EditReady says the driver holds one (loaded from a
	// file, pasted, or the image just made).
	Edit      EditSpec
	EditReady bool
	// Lost is the GPU device loss the state stopped for (Stopped until the front end has opened a new
	// backend: Load); nil otherwise. Front ends reload at once when it is set (the weights stay in memory).
	Lost error
	// Depth is the code depth count the finished image is shown from (1..Model.Depths; Model.Depths after
	// every run), 0 without a finished run or a depth view; DepthImage is the image of the first Depth
	// depths once decoded (OnDepth), nil while it is the run's final image (Depth == Model.Depths).
	Depth      int
	DepthImage *image.NRGBA
	nextID     int
	// typed is the class number being typed (TypeDigit) and typedAt when its last digit came.
	typed   int
	typedAt time.Time
}

// New is the state before the model has loaded, starting from the given settings (the URL's or the
// command line's; the others come from the model when it loads).
func New(s Settings) *State {
	if s.Values == nil {
		s.Values = gen.Settings{}
	}
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
	if weights.Retryable(err) {
		// The network failed (after the loader's own retries) or served bytes that did not verify: not a
		// dead end. Load tries again, taking the chunks verified so far from the cache.
		s.Phase = Stopped
		s.Message = "loading failed: " + err.Error() + ": press Load to try again (the chunks verified so far are kept)"
		return
	}
	if err != nil {
		s.Phase = Failed
		s.Message = "loading failed: " + err.Error()
		return
	}
	s.Phase, s.Model = Idle, m
	lost := s.Lost
	s.Lost = nil
	defer func() {
		if lost != nil {
			s.Message = fmt.Sprintf("recovered from %v: the GPU was reopened and the weights kept; press Generate", lost)
		}
	}()
	s.defaultEditMode()
	if len(m.ClassNames) != m.Classes {
		s.Model.ClassNames = nil
	}
	s.Settings.Class = min(max(s.Settings.Class, 0), m.Classes-1)
	// The values given before the model was known stay where the model takes them and they are valid;
	// the rest come from the model's defaults.
	var dropped []string
	values := gen.Settings{}
	for _, d := range m.Settings {
		values[d.Name] = d.Default
		if v, ok := s.Settings.Values[d.Name]; ok {
			if d.Check(v) == nil {
				values[d.Name] = v
			} else {
				dropped = append(dropped, d.Name+"="+v)
			}
		}
	}
	for k, v := range s.Settings.Values {
		if _, ok := values[k]; !ok {
			dropped = append(dropped, k+"="+v)
		}
	}
	s.Settings.Values = values
	steps := s.Steps()
	if s.K == 0 {
		s.K = max(1, steps/2)
	}
	s.K = min(max(s.K, 1), max(1, steps-1))
	s.Message = fmt.Sprintf("%d classes, %d %ss, %s images", m.Classes, steps, m.StepNoun, s.SizeLabel())
	if len(dropped) > 0 {
		s.Message += "; ignored " + strings.Join(dropped, ", ") + " (not a setting of this model, or invalid)"
	}
}

// Steps is the step count of the current settings: the schedule's length where the family has one
// (FlexVAR), else the model's fixed count.
func (s *State) Steps() int {
	if v, ok := s.Settings.Values["schedule"]; ok {
		if sides, err := gen.ParseInts(v); err == nil && len(sides) > 0 {
			return len(sides)
		}
	}
	return s.Model.Steps
}

// SizeLabel is the image size the current settings give, "64x64" ("?" when unknown or invalid).
func (s *State) SizeLabel() string {
	if s.Model.Size == nil {
		return "?"
	}
	h, w, err := s.Model.Size(s.Settings.Values)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%dx%d", w, h)
}

// ClassLabel is "207: golden retriever", or "class 207" without names.
func (s *State) ClassLabel() string {
	c := s.Settings.Class
	if s.Model.ClassNames != nil {
		return fmt.Sprintf("%d: %s", c, s.Model.ClassNames[c])
	}
	return fmt.Sprintf("class %d", c)
}

// Request is the generation of the current settings: one image, with every step's preview.
func (s *State) Request() gen.Request {
	st := s.Settings
	return gen.Request{Labels: []int{st.Class}, Seed: st.Seed, Settings: st.Values.Clone(), Previews: true}
}

// SaveName is the file name a saved image gets, the same in every front end: the class's name in lower
// case with dashes (its number without names) and the seed, "sneaker-seed3.png".
func (s *State) SaveName(class int, seed uint64) string {
	label := strconv.Itoa(class)
	if class >= 0 && class < len(s.Model.ClassNames) {
		if l := strings.ToLower(strings.Join(strings.FieldsFunc(s.Model.ClassNames[class], func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}), "-")); l != "" {
			label = l
		}
	}
	return fmt.Sprintf("%s-seed%d.png", label, seed)
}

// Enabled says whether an action does anything now (disabled buttons are drawn dimmed).
func (s *State) Enabled(a Action) bool {
	switch a {
	case ActCancel:
		return s.Phase == Generating || s.Phase == Loading
	case ActSave:
		return s.Run != nil && s.Run.Finished
	case ActEdit:
		return s.Model.Editor && s.EditReady && s.Phase == Idle
	case ActEditModePrev, ActEditModeNext:
		return len(EditModes(s.Model.Family)) > 1
	case ActReroll:
		return s.Model.Reroll && s.Phase == Idle && s.Run != nil && s.Run.Finished && len(s.Run.Tokens) > 1
	case ActRandomize:
		return s.Model.RandomAfter && s.Phase == Idle && s.Run != nil && s.Run.Finished && len(s.Run.Tokens) > 1
	case ActGenerate:
		return s.Phase == Idle || s.Phase == Stopped
	case ActDepthDown:
		return s.DepthView() && s.Depth > 1
	case ActDepthUp:
		return s.DepthView() && s.Depth < s.Model.Depths
	}
	// Settings can change while loading or generating: they apply to the next run.
	return s.Phase != Failed
}

// Apply performs a user action and returns what the driver must do.
func (s *State) Apply(a Action) Command {
	if !s.Enabled(a) {
		if a == ActEdit && s.Phase == Idle {
			if err := s.checkEdit(); err != nil {
				s.Message = err.Error() // say what is missing
			}
		}
		return Command{}
	}
	st := &s.Settings
	if i, up, ok := a.setting(); ok {
		if i < len(s.Model.Settings) {
			d := s.Model.Settings[i]
			st.Values[d.Name] = StepSetting(d, st.Values[d.Name], up)
		}
		return Command{}
	}
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
	case ActKDown:
		s.K = max(1, s.K-1)
	case ActKUp:
		s.K = min(max(1, s.rerollSteps()-1), s.K+1)
	case ActGenerate:
		if s.Phase == Stopped {
			s.Phase = Loading
			s.Message = "loading again..."
			return Command{Kind: Load}
		}
		return s.start(s.Request(), "generate")
	case ActReroll, ActRandomize:
		// Keep the first K steps of the last run (with its settings: the kept tokens belong to them),
		// and with a new seed (every front end draws it here, so the seed shown made the image) either
		// resample the rest or, for randomize, replace it with uniformly random tokens.
		k := min(max(s.K, 1), len(s.Run.Tokens)-1)
		st.Seed = s.Rand() % 1_000_000
		req := s.Request()
		req.Settings = s.Run.Request.Settings.Clone()
		req.Prefix = s.Run.Tokens[:k]
		if a == ActReroll {
			return s.start(req, fmt.Sprintf("reroll from %s %d", s.Model.StepNoun, k+1))
		}
		req.RandomAfter = k
		return s.start(req, fmt.Sprintf("randomize after %s %d", s.Model.StepNoun, k))
	case ActEditModePrev, ActEditModeNext:
		modes := EditModes(s.Model.Family)
		i := slices.Index(modes, s.Edit.Mode)
		if a == ActEditModeNext {
			i = (i + 1) % len(modes)
		} else {
			i = (i + len(modes) - 1) % len(modes)
		}
		s.Edit.Mode = modes[max(i, 0)]
	case ActEdit:
		if s.Edit.K == 0 {
			s.Edit.K = s.K // the canvas UI's "keep" stepper (the page has its own input)
		}
		if err := s.checkEdit(); err != nil {
			s.Message = err.Error()
			return Command{}
		}
		spec := s.Edit
		cmd := s.start(s.Request(), "edit ("+string(spec.Mode)+")")
		cmd.Edit = &spec
		return cmd
	case ActCancel:
		s.Message = "cancelling..."
		if s.Phase == Loading {
			s.Message = "cancelling the download..."
		}
		return Command{Kind: Cancel}
	case ActSave:
		r := s.Run.Request
		return Command{Kind: Save, Name: s.SaveName(r.Labels[0], r.Seed)}
	case ActDepthDown:
		return s.SetDepth(s.Depth - 1)
	case ActDepthUp:
		return s.SetDepth(s.Depth + 1)
	}
	return Command{}
}

// DepthView says whether the depth control is shown and works: a model with code depths and a finished
// run, with nothing in flight.
func (s *State) DepthView() bool {
	return s.Model.Depths > 1 && s.Phase == Idle && s.Run != nil && s.Run.Finished && s.Depth > 0
}

// SetDepth picks the depth count k the finished image is shown from (clamped to 1..Model.Depths; the
// depth stepper and the HTML slider both come here): ShowDepth asks the driver for its image, which it
// hands back with OnDepth.
func (s *State) SetDepth(k int) Command {
	if !s.DepthView() {
		return Command{}
	}
	k = min(max(k, 1), s.Model.Depths)
	if k == s.Depth {
		return Command{}
	}
	s.Depth = k
	s.Message = fmt.Sprintf("decoding the first %d of %d code depths...", k, s.Model.Depths)
	return Command{Kind: ShowDepth, Depth: k}
}

// OnDepth records the image of the first k depths of run id (img may be nil for k == Model.Depths: the
// final image). A result for an older run or for a depth no longer picked is ignored (it reports false:
// the driver must not show it).
func (s *State) OnDepth(id, k int, img *image.NRGBA, err error) bool {
	if s.Run == nil || s.Run.ID != id || !s.Run.Finished || k != s.Depth {
		return false
	}
	if err != nil {
		s.Message = fmt.Sprintf("depths 1..%d: %v", k, err)
		return false
	}
	s.DepthImage = img
	if k == s.Model.Depths {
		s.DepthImage = nil
	}
	s.Message = fmt.Sprintf("the image from code depths 1..%d of %d", k, s.Model.Depths)
	return true
}

// DepthLabel is the depth control's value, "2/4".
func (s *State) DepthLabel() string { return fmt.Sprintf("%d/%d", s.Depth, s.Model.Depths) }

func (s *State) start(req gen.Request, kind string) Command {
	s.nextID++
	s.Phase = Generating
	s.Run = &Run{ID: s.nextID, Request: req, Kind: kind}
	s.Depth, s.DepthImage = 0, nil
	s.Message = kind + "..."
	return Command{Kind: Start, Request: req}
}

// OnStep records a finished step of run id (events of an older run are ignored); preview is its image
// (nil without one). st.Elapsed is since the start of the run.
func (s *State) OnStep(id int, st gen.Step, preview *image.NRGBA) {
	if s.Run == nil || s.Run.ID != id {
		return
	}
	took := st.Elapsed - s.Run.Total
	s.Run.Total = st.Elapsed
	s.Run.Steps = st.Count
	label := st.Label
	if label == "" {
		label = fmt.Sprintf("%s %d/%d", s.Model.StepNoun, st.Index+1, st.Count)
	}
	s.Run.Scales = append(s.Run.Scales, ScaleResult{Scale: st.Index, GridH: st.GridH, GridW: st.GridW, Label: label,
		Took: took, Preview: preview})
	s.Message = fmt.Sprintf("%s: %s took %s", s.Run.Kind, label, took.Round(time.Millisecond))
}

// OnDone ends run id with its tokens or an error (context.Canceled after Cancel).
func (s *State) OnDone(id int, tokens [][]int, err error) {
	if s.Run == nil || s.Run.ID != id {
		return
	}
	s.Phase = Idle
	if errors.Is(err, core.ErrDeviceLost) {
		s.Run.Err = err
		s.OnDeviceLost(err)
		return
	}
	if err != nil {
		s.Run.Err = err
		s.Message = fmt.Sprintf("%s stopped: %v", s.Run.Kind, err)
		return
	}
	s.Run.Finished, s.Run.Tokens = true, tokens
	s.K = min(max(s.K, 1), max(1, len(tokens)-1))
	if s.Model.Depths > 1 {
		s.Depth = s.Model.Depths // a new image shows every depth
	}
	s.Message = fmt.Sprintf("%s: %d %ss in %s", s.Run.Kind, len(s.Run.Scales), s.Model.StepNoun, s.Run.Total.Round(time.Millisecond))
}

// OnDeviceLost records that the backend's GPU device is gone (err wraps core.ErrDeviceLost): from Idle, or
// at the end of the run it broke, the state stops (Generate reads "Load") with a message naming the loss.
// The model's weights are fine: Load opens a new backend (the front end keeps the downloaded weights),
// and the next Generate runs the same request again. During a load or a run it waits for their end.
func (s *State) OnDeviceLost(err error) {
	if s.Phase != Idle {
		return
	}
	s.Phase, s.Lost = Stopped, err
	s.Message = fmt.Sprintf("%v: reopening the GPU (the weights stay loaded)", err)
}

// OnSaved reports the result of a Save command.
func (s *State) OnSaved(path string, err error) {
	if err != nil {
		s.Message = "save failed: " + err.Error()
		return
	}
	s.Message = "saved " + path
}

// Shown is the image in the image area: the first Depth code depths of the finished run where a smaller
// depth is picked, else Latest. Save saves it.
func (s *State) Shown() *image.NRGBA {
	if s.DepthImage != nil {
		return s.DepthImage
	}
	return s.Latest()
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

// rerollSteps is the step count a reroll or randomize works on: the last finished run's.
func (s *State) rerollSteps() int {
	if s.Run != nil && s.Run.Finished {
		return len(s.Run.Tokens)
	}
	return s.Steps()
}

// StepSetting is the value a setting's < or > control moves v to: numbers by their step within the
// range (top-k through gen.TopKPresets, 0 meaning off counted above every k), booleans toggle, choices
// and presets cycle.
func StepSetting(d gen.Setting, v string, up bool) string {
	switch d.Kind {
	case gen.Bool:
		b, _ := strconv.ParseBool(v)
		return strconv.FormatBool(!b)
	case gen.Float:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return d.Default
		}
		step := d.Step
		if step <= 0 {
			step = 0.1
		}
		if up {
			f += step
		} else {
			f -= step
		}
		if d.Max > d.Min {
			f = min(max(f, d.Min), d.Max)
		}
		return strconv.FormatFloat(roundTo(f, step), 'f', -1, 64)
	case gen.Int:
		i, err := strconv.Atoi(v)
		if err != nil {
			return d.Default
		}
		if d.Name == "top-k" {
			return strconv.Itoa(stepTopK(i, up))
		}
		step := max(1, int(d.Step))
		if up {
			i += step
		} else {
			i -= step
		}
		if d.Max > d.Min {
			i = min(max(i, int(d.Min)), int(d.Max))
		}
		return strconv.Itoa(i)
	}
	list := d.Choices
	if len(list) == 0 {
		list = d.Presets
	}
	if len(list) == 0 {
		return v
	}
	for i, c := range list {
		if c == v {
			if up {
				return list[(i+1)%len(list)]
			}
			return list[(i+len(list)-1)%len(list)]
		}
	}
	if up {
		return list[0]
	}
	return list[len(list)-1]
}

// SettingLabel is how a setting's value is shown: top-k and top-p 0 as "off", a schedule as its step
// count and last side, booleans as on/off.
func SettingLabel(d gen.Setting, v string) string {
	switch {
	case (d.Name == "top-k" || d.Name == "top-p") && (v == "0" || v == "0.0"):
		return "off"
	case d.Kind == gen.Bool:
		if b, _ := strconv.ParseBool(v); b {
			return "on"
		}
		return "off"
	case d.Kind == gen.List:
		if sides, err := gen.ParseInts(v); err == nil && len(sides) > 0 {
			return fmt.Sprintf("%d steps, to %d", len(sides), sides[len(sides)-1])
		}
	}
	return v
}

// stepTopK moves to the next larger or smaller value of gen.TopKPresets; 0 (off) counts as above every
// k, and a k between steps moves to the neighbouring step in that direction.
func stepTopK(k int, up bool) int {
	var steps []int
	for _, p := range gen.TopKPresets {
		if v, err := strconv.Atoi(p); err == nil && v > 0 {
			steps = append(steps, v)
		}
	}
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
	if n < 0 {
		return -float64(int64(-n+0.5)) * step
	}
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
