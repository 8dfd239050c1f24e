package uistate

import (
	"context"
	"errors"
	"fmt"
	"image"
	"strings"
	"testing"
	"time"

	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/mar"
	"github.com/webvar/webvar/core/varmodel"
)

// tiny is a VAR model of 4 scales with the official sampling defaults; flex a FlexVAR one.
var (
	tiny = ModelInfo{Family: "var", Classes: 3, ClassNames: []string{"cat", "dog", "fox"}, StepNoun: "scale", Steps: 4,
		Settings: varmodel.OfficialSampling.Settings(64), RandomAfter: true, Reroll: true,
		Size: func(gen.Settings) (int, int, error) { return 64, 64, nil }}
	flex = ModelInfo{Family: "flexvar", Classes: 10, StepNoun: "step", Steps: 4, Reroll: true,
		Settings: flexvar.Defaults{CFG: 2.5, TopK: 900, TopP: 0.95, Schedule: []int{1, 2, 3, 4}, MaxPN: 16}.Settings(64)}
)

// act is the action of the named setting's < or > control.
func act(t *testing.T, s *State, name string, up bool) Action {
	t.Helper()
	_, i, ok := s.Model.Setting(name)
	if !ok {
		t.Fatalf("no setting %q", name)
	}
	if up {
		return SettingUp(i)
	}
	return SettingDown(i)
}

func loaded(t *testing.T) *State {
	t.Helper()
	s := New(Defaults())
	seeds := []uint64{1234567, 42, 7}
	s.Rand = func() uint64 { v := seeds[0]; seeds = seeds[1:]; return v }
	s.OnLoaded(tiny, nil)
	if s.Phase != Idle {
		t.Fatalf("phase %v after load", s.Phase)
	}
	return s
}

// click presses the button with action a through its drawn rectangle, as a mouse click does.
func click(t *testing.T, s *State, a Action) Command {
	t.Helper()
	for _, w := range s.Widgets() {
		if w.Action == a {
			c := w.Rect.Min.Add(w.Rect.Size().Div(2))
			if got := s.Hit(c); got != a {
				t.Fatalf("click at %v hit %v, want %v (enabled %v)", c, got, a, w.Enabled)
			}
			return s.Apply(a)
		}
	}
	t.Fatalf("no widget for action %v", a)
	return Command{}
}

// finish plays a whole run of n scales through the state as the driver would.
func finish(s *State, tokens [][]int) {
	id := s.Run.ID
	for si := range tokens {
		s.OnStep(id, gen.Step{Index: si, Count: len(tokens), GridH: si + 1, GridW: si + 1,
			Elapsed: time.Duration(si+1) * 100 * time.Millisecond}, image.NewNRGBA(image.Rect(0, 0, 64, 64)))
	}
	s.OnDone(id, tokens, nil)
}

func TestLoadProgressText(t *testing.T) {
	p := LoadProgress{BytesDone: 10e6, BytesTotal: 40e6, Elapsed: 2 * time.Second}
	if p.Rate() != 5 {
		t.Fatalf("rate %g MB/s, want 5", p.Rate())
	}
	if eta, ok := p.ETA(); !ok || eta != 6*time.Second {
		t.Fatalf("eta %v %v, want 6s", eta, ok)
	}
	if got, want := p.Text(), "10.0 / 40.0 MB (25%), 5.0 MB/s, ETA 6s"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if _, ok := (LoadProgress{BytesTotal: 5}).ETA(); ok {
		t.Fatal("ETA before any byte")
	}
	s := New(Defaults())
	s.OnProgress(p)
	if s.Title() != "loading weights: "+p.Text() {
		t.Fatalf("title %q", s.Title())
	}
	if s.Apply(ActGenerate).Kind != None {
		t.Fatal("generate while loading")
	}
	s.OnLoaded(ModelInfo{}, errors.New("boom"))
	if s.Phase != Failed || s.Message != "loading failed: boom" {
		t.Fatalf("phase %v message %q", s.Phase, s.Message)
	}
}

func TestGenerateBuildsRequestFromControls(t *testing.T) {
	s := loaded(t)
	click(t, s, ActClassPrev) // wraps from 0 to the last class
	if s.ClassLabel() != "2: fox" {
		t.Fatalf("class label %q", s.ClassLabel())
	}
	click(t, s, ActDice)
	click(t, s, ActSeedUp)
	click(t, s, act(t, s, "cfg", false))   // 4 -> 3.75
	click(t, s, act(t, s, "top-k", false)) // 900 -> 600
	click(t, s, act(t, s, "top-p", true))  // 0.95 -> 0.96
	click(t, s, act(t, s, "more-smooth", true))
	c := click(t, s, ActGenerate)
	want := gen.Request{Labels: []int{2}, Seed: 234568, Previews: true,
		Settings: gen.Settings{"cfg": "3.75", "top-k": "600", "top-p": "0.96", "more-smooth": "true", "previews": "auto"}}
	if c.Kind != Start || fmt.Sprint(c.Request) != fmt.Sprint(want) {
		t.Fatalf("command %+v, want Start %+v", c, want)
	}
	if s.Phase != Generating || s.Enabled(ActGenerate) || !s.Enabled(ActCancel) {
		t.Fatalf("phase %v during a run", s.Phase)
	}
	if s.Apply(ActGenerate).Kind != None {
		t.Fatal("a second run started while one is in flight")
	}
	if click(t, s, ActCancel).Kind != Cancel {
		t.Fatal("cancel did not ask to cancel")
	}
	s.OnDone(s.Run.ID, nil, context.Canceled)
	if s.Phase != Idle || s.Enabled(ActSave) || s.Enabled(ActReroll) {
		t.Fatalf("after cancel: phase %v, save %v reroll %v", s.Phase, s.Enabled(ActSave), s.Enabled(ActReroll))
	}
}

func TestScalesArriveAndRerollKeepsPrefix(t *testing.T) {
	s := loaded(t)
	s.Apply(ActGenerate)
	first := s.Run.ID
	tokens := [][]int{{1}, {2, 3, 4, 5}, make([]int, 9), make([]int, 16)}
	s.OnStep(first, gen.Step{Index: 0, Count: 4, Elapsed: 300 * time.Millisecond}, nil)
	s.OnStep(first, gen.Step{Index: 1, Count: 4, Elapsed: 500 * time.Millisecond}, nil)
	if got := s.Run.Scales[1].Took; got != 200*time.Millisecond {
		t.Fatalf("scale 2 took %v, want 200ms", got)
	}
	if s.Title() != "scale 2/4, 500ms" {
		t.Fatalf("title %q", s.Title())
	}
	s.Run.Scales = nil
	s.Run.Total = 0
	finish(s, tokens)
	if !s.Enabled(ActSave) || s.Apply(ActSave).Name != "cat-seed0.png" {
		t.Fatal("save after a run")
	}

	if s.K != 2 {
		t.Fatalf("default k %d, want half of 4 scales", s.K)
	}
	click(t, s, ActKDown)
	click(t, s, ActKDown) // clamps at 1
	if s.K != 1 {
		t.Fatalf("k %d", s.K)
	}
	c := click(t, s, ActReroll)
	if c.Kind != Start || fmt.Sprint(c.Request.Prefix) != "[[1]]" || c.Request.Seed != 1234567%1_000_000 || c.Request.RandomAfter != 0 {
		t.Fatalf("reroll request %+v", c.Request)
	}
	// A late event of the first run must not land in the reroll.
	s.OnStep(first, gen.Step{Index: 3}, nil)
	if len(s.Run.Scales) != 0 {
		t.Fatal("an old run's scale was recorded")
	}
	finish(s, tokens)
	for range 5 {
		click(t, s, ActKUp) // clamps at scales-1
	}
	c = click(t, s, ActRandomize)
	if c.Request.RandomAfter != 3 || len(c.Request.Prefix) != 3 || c.Request.Seed != 42 || s.Settings.Seed != 42 {
		t.Fatalf("randomize request %+v (seed shown %d)", c.Request, s.Settings.Seed)
	}
}

func TestTopKStepsAndClamps(t *testing.T) {
	cases := []struct {
		k        int
		up, down int
	}{{1, 2, 1}, {900, 0, 600}, {0, 0, 900}, {7, 10, 5}, {5000, 0, 900}}
	for _, c := range cases {
		if got := stepTopK(c.k, true); got != c.up {
			t.Errorf("top-k %d up: %d, want %d", c.k, got, c.up)
		}
		if got := stepTopK(c.k, false); got != c.down {
			t.Errorf("top-k %d down: %d, want %d", c.k, got, c.down)
		}
	}
	s := loaded(t)
	s.Settings.Values["top-p"] = "0.01"
	s.Apply(act(t, s, "top-p", false))
	s.Apply(act(t, s, "top-p", false))
	d, _, _ := s.Model.Setting("top-p")
	if v := s.Settings.Values["top-p"]; v != "0" || SettingLabel(d, v) != "off" {
		t.Fatalf("top-p %q %q", v, SettingLabel(d, v))
	}
	s.Settings.Values["cfg"] = "0.2"
	s.Apply(act(t, s, "cfg", false))
	if v := s.Settings.Values["cfg"]; v != "0" {
		t.Fatalf("cfg %q", v)
	}
}

// A FlexVAR model's own settings become controls: the schedule steps through its presets (and changes
// the step count the reroll keeps), cfg mode cycles, and there is no randomize experiment.
func TestFlexVARSettingsAreControls(t *testing.T) {
	s := New(Settings{Values: gen.Settings{"more-smooth": "true", "cfg": "3"}})
	s.OnLoaded(flex, nil)
	if s.Settings.Values["cfg"] != "3" || s.Settings.Values["schedule"] != "1,2,3,4" {
		t.Fatalf("values after load %v", s.Settings.Values)
	}
	if !strings.Contains(s.Message, "ignored more-smooth=true") {
		t.Errorf("message %q does not say more-smooth was ignored", s.Message)
	}
	click(t, s, act(t, s, "schedule", true))
	if got := s.Settings.Values["schedule"]; got != flexvar.SchedulePresets([]int{1, 2, 3, 4})[1] || s.Steps() != 6 {
		t.Fatalf("schedule after > %q (%d steps)", got, s.Steps())
	}
	click(t, s, act(t, s, "cfg-mode", true))
	click(t, s, act(t, s, "aspect", true))
	c := click(t, s, ActGenerate)
	if c.Request.Settings["cfg-mode"] != "llamagen" || c.Request.Settings["aspect"] != "4:3" {
		t.Fatalf("request settings %v", c.Request.Settings)
	}
	finish(s, make([][]int, 6))
	if !s.Enabled(ActReroll) || s.Enabled(ActRandomize) {
		t.Fatal("FlexVAR: reroll should be on and randomize off")
	}
	for _, w := range s.Widgets() {
		if w.Action == ActRandomize {
			t.Fatal("a randomize button for a family without the experiment")
		}
	}
	// The reroll keeps the finished run's settings, whatever the controls show now.
	click(t, s, act(t, s, "schedule", true))
	c = click(t, s, ActReroll)
	if c.Request.Settings["schedule"] != flexvar.SchedulePresets([]int{1, 2, 3, 4})[1] || len(c.Request.Prefix) != s.K {
		t.Fatalf("reroll settings %v, prefix %d", c.Request.Settings, len(c.Request.Prefix))
	}
}

func TestLoadClampsSettingsAndDropsMismatchedNames(t *testing.T) {
	s := New(Settings{Class: 99, Values: gen.Settings{"top-k": "x"}})
	s.OnLoaded(ModelInfo{Classes: 10, ClassNames: []string{"only one"}, StepNoun: "scale", Steps: 2,
		Settings: varmodel.OfficialSampling.Settings(64)}, nil)
	if s.Settings.Class != 9 || s.ClassLabel() != "class 9" || s.K != 1 {
		t.Fatalf("class %d label %q k %d", s.Settings.Class, s.ClassLabel(), s.K)
	}
	if s.Settings.Values["top-k"] != "900" || !strings.Contains(s.Message, "ignored top-k=x") {
		t.Fatalf("invalid top-k kept: %v, %q", s.Settings.Values, s.Message)
	}
}

func TestImageRectIsIntegerScaledInsideTheArea(t *testing.T) {
	area := image.Rect(ImageAreaX, ImageAreaY, ImageAreaX+ImageAreaSize, ImageAreaY+ImageAreaSize)
	for _, c := range []struct {
		w, h  int
		scale float64
	}{{64, 64, 8}, {256, 256, 2}, {512, 512, 1}, {100, 100, 5}, {128, 80, 4}, {80, 128, 4}, {1024, 768, 0.5}} {
		r, sc := ImageRect(c.w, c.h)
		if sc != c.scale || r.Dx() != int(float64(c.w)*sc) || r.Dy() != int(float64(c.h)*sc) || !r.In(area) {
			t.Errorf("%dx%d: rect %v scale %g, want scale %g inside %v", c.w, c.h, r, sc, c.scale, area)
		}
	}
	// Widgets stay on the canvas and left of the image; buttons do not overlap.
	s := loaded(t)
	ws := s.Widgets()
	for i, w := range ws {
		if w.Rect.Max.X > ImageAreaX || w.Rect.Max.Y > ProgressRect().Min.Y {
			t.Errorf("widget %q at %v overlaps the image or status", w.Text, w.Rect)
		}
		for _, o := range ws[i+1:] {
			if w.Rect.Overlaps(o.Rect) {
				t.Errorf("widgets %q and %q overlap", w.Text, o.Text)
			}
		}
	}
	for _, n := range []int{10, 14, 24} {
		if ThumbRect(n-1, n).Max.X > Width || ThumbLabelPos(0, n).Y+14 > ProgressRect().Min.Y || ThumbRect(0, n).Overlaps(ThumbRect(1, n)) {
			t.Errorf("%d thumbnails do not fit: %v, label at %v", n, ThumbRect(n-1, n), ThumbLabelPos(0, n))
		}
	}
	// A FlexVAR model's controls fit too.
	f := New(Defaults())
	f.OnLoaded(flex, nil)
	for _, w := range f.Widgets() {
		if w.Rect.Max.X > ImageAreaX || w.Rect.Max.Y > ProgressRect().Min.Y {
			t.Errorf("FlexVAR widget %q at %v overlaps the image or status", w.Text, w.Rect)
		}
	}
}

// Cancel during the download stops it (Stopped, with how far it got); the Generate button, now "Load",
// starts it again; a failed load is final.
func TestCancelDownloadThenLoadAgain(t *testing.T) {
	s := New(Defaults())
	if s.Enabled(ActGenerate) {
		t.Fatal("Generate enabled before the model has loaded")
	}
	s.OnProgress(LoadProgress{BytesDone: 12e6, BytesTotal: 48e6, Elapsed: time.Second})
	if c := click(t, s, ActCancel); c.Kind != Cancel {
		t.Fatalf("Cancel while loading: command %v, want Cancel", c.Kind)
	}
	s.OnLoaded(ModelInfo{}, fmt.Errorf("weights: chunk 3: %w", context.Canceled))
	if s.Phase != Stopped {
		t.Fatalf("phase %v after a cancelled load, want Stopped", s.Phase)
	}
	if want := "download cancelled at 12.0 of 48.0 MB"; !strings.Contains(s.Message, want) {
		t.Fatalf("message %q, want it to say %q", s.Message, want)
	}
	if s.Enabled(ActCancel) || s.Enabled(ActSave) || s.Enabled(ActReroll) {
		t.Fatal("Cancel, Save or Reroll enabled with no download and no model")
	}
	var label string
	for _, w := range s.Widgets() {
		if w.Action == ActGenerate {
			label = w.Text
		}
	}
	if label != "Load (G)" {
		t.Fatalf("Generate button reads %q while stopped, want %q", label, "Load (G)")
	}
	if c := click(t, s, ActGenerate); c.Kind != Load || s.Phase != Loading {
		t.Fatalf("Load: command %v phase %v, want Load and Loading", c.Kind, s.Phase)
	}
	s.OnLoaded(tiny, nil)
	if s.Phase != Idle || !s.Enabled(ActGenerate) {
		t.Fatalf("phase %v after the second load, want Idle with Generate enabled", s.Phase)
	}

	f := New(Defaults())
	f.OnLoaded(ModelInfo{}, errors.New("weights: chunk 3: checksum mismatch"))
	if f.Phase != Failed || f.Enabled(ActGenerate) || f.Enabled(ActCancel) {
		t.Fatalf("failed load: phase %v, Generate %v, Cancel %v; want Failed with both off", f.Phase,
			f.Enabled(ActGenerate), f.Enabled(ActCancel))
	}
}

func TestNoticeLinesWrapToThePanel(t *testing.T) {
	msg := "WebGPU unavailable: no usable WebGPU in this browser: the browser offers no WebGPU adapter; using the CPU"
	lines := NoticeLines(msg)
	if got := strings.Join(lines, " "); got != msg {
		t.Fatalf("wrapped lines lose text: %q", got)
	}
	for _, l := range lines {
		if len(l) > noticeChars {
			t.Errorf("line %q is longer than %d characters", l, noticeChars)
		}
	}
	if len(lines) < 2 || NoticePos(0, len(lines)).Y >= NoticePos(1, len(lines)).Y || NoticePos(len(lines)-1, len(lines)).Y >= ProgressRect().Min.Y {
		t.Errorf("%d lines at %v..%v: want several, top to bottom, above the progress bar %v", len(lines),
			NoticePos(0, len(lines)), NoticePos(len(lines)-1, len(lines)), ProgressRect())
	}
	if NoticeLines("") != nil {
		t.Error("an empty notice has lines")
	}
}

func TestTypedDigitsSelectAClass(t *testing.T) {
	s := New(Defaults())
	s.OnLoaded(ModelInfo{Classes: 1000, StepNoun: "scale", Steps: 2}, nil)
	t0 := time.Unix(100, 0)
	for i, d := range []int{2, 0, 7} {
		s.TypeDigit(d, t0.Add(time.Duration(i)*500*time.Millisecond))
	}
	if s.Settings.Class != 207 {
		t.Fatalf("typed 2, 0, 7: class %d, want 207", s.Settings.Class)
	}
	s.TypeDigit(5, t0.Add(10*time.Second)) // after a pause: a new number
	if s.Settings.Class != 5 {
		t.Fatalf("digit after a pause: class %d, want 5", s.Settings.Class)
	}
	for _, d := range []int{9, 9, 9, 9} { // 9999 is past 1000 classes: starts over at the last digit
		s.TypeDigit(d, t0.Add(20*time.Second))
	}
	if s.Settings.Class != 9 {
		t.Errorf("typed 9999: class %d, want 9 (999 then a fourth 9 starts over)", s.Settings.Class)
	}
}

// MAR: its own settings as controls, and no reroll or randomize (continuous tokens have no ids to keep),
// in the canvas UI's widgets as in Enabled.
func TestMARHasNoReroll(t *testing.T) {
	m := ModelInfo{Family: "mar", Classes: 10, StepNoun: "iteration", Steps: 4, Settings: mar.OfficialSampling.Settings(16)}
	s := New(Defaults())
	s.OnLoaded(m, nil)
	if s.Settings.Values["iters"] != "16" || s.Settings.Values["diffusion-steps"] != "100" || s.Settings.Values["cfg-schedule"] != "linear" {
		t.Fatalf("settings %v", s.Settings.Values)
	}
	s.Apply(ActGenerate)
	id := s.Run.ID
	for i := range 4 {
		s.OnStep(id, gen.Step{Index: i, Count: 4, GridH: 4, GridW: 4}, image.NewNRGBA(image.Rect(0, 0, 64, 64)))
	}
	s.OnDone(id, nil, nil)
	if !s.Enabled(ActSave) || s.Enabled(ActReroll) || s.Enabled(ActRandomize) {
		t.Fatalf("save %v reroll %v randomize %v", s.Enabled(ActSave), s.Enabled(ActReroll), s.Enabled(ActRandomize))
	}
	for _, w := range s.Widgets() {
		if w.Action == ActReroll || w.Action == ActRandomize || w.Action == ActKUp {
			t.Errorf("widget %q for MAR", w.Text)
		}
	}
}
