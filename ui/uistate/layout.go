package uistate

import (
	"fmt"
	"image"
	"strings"

	"github.com/webvar/webvar/core/gen"
)

// Action is a user intent: a button click or its keyboard shortcut.
type Action int

const (
	ActNone Action = iota
	ActClassPrev
	ActClassNext
	ActSeedDown
	ActSeedUp
	ActDice
	ActGenerate
	ActCancel
	ActSave
	ActKDown
	ActKUp
	ActReroll
	ActRandomize
	ActEdit         // edit the input image the driver holds (State.Edit says how)
	ActEditModePrev // the edit mode stepper
	ActEditModeNext
	ActDepthDown // the depth stepper (ModelInfo.Depths): the image from one code depth fewer or more
	ActDepthUp
	// actSettings is the first of the family settings' actions: SettingDown(i) and SettingUp(i) step
	// ModelInfo.Settings[i] (a boolean toggles either way).
	actSettings Action = 1000
)

// SettingDown is the < control of the model's i-th setting.
func SettingDown(i int) Action { return actSettings + Action(2*i) }

// SettingUp is the > control of the model's i-th setting.
func SettingUp(i int) Action { return actSettings + Action(2*i+1) }

// setting decodes a setting's action.
func (a Action) setting() (i int, up, ok bool) {
	if a < actSettings {
		return 0, false, false
	}
	n := int(a - actSettings)
	return n / 2, n%2 == 1, true
}

// SettingAction is the > action of the named setting (a boolean's toggle): what a keyboard shortcut
// does. ActNone when the model has no such setting.
func (s *State) SettingAction(name string) Action {
	if _, i, ok := s.Model.Setting(name); ok {
		return SettingUp(i)
	}
	return ActNone
}

// The canvas is laid out in fixed logical pixels: controls on the left, the image on the right at an
// integer nearest-neighbour scale inside ImageArea (so a screenshot holds the exact generated pixels), the
// per-scale previews below it and the status line at the bottom.
const (
	Width, Height = 892, 660
	panelX        = 16
	rowH          = 36 // row pitch
	buttonH       = 28
	labelW        = 96  // fits "diffusion steps"
	stepW         = 28  // a < or > button
	valueW        = 130 // the value between two steppers
	gap           = 4
	ThumbSize     = 46 // per-scale preview side
	thumbPitch    = ThumbSize + 5
	thumbY        = ImageAreaY + ImageAreaSize + 12
	statusY       = Height - 40
)

// ImageArea is the square the generated image is drawn into.
const (
	ImageAreaX, ImageAreaY, ImageAreaSize = 368, 16, 512
)

// ImageRect is where an image of w x h pixels is drawn: scaled by the largest integer factor that fits
// ImageArea (so every generated pixel is an exact block, which screenshot tests crop and compare) and
// centred in it; an image larger than the area is scaled down to fit (scale < 1).
func ImageRect(w, h int) (r image.Rectangle, scale float64) {
	w, h = max(w, 1), max(h, 1)
	if w > ImageAreaSize || h > ImageAreaSize {
		scale = float64(ImageAreaSize) / float64(max(w, h))
	} else {
		scale = float64(max(1, min(ImageAreaSize/w, ImageAreaSize/h)))
	}
	sw, sh := int(float64(w)*scale), int(float64(h)*scale)
	x0 := ImageAreaX + (ImageAreaSize-sw)/2
	y0 := ImageAreaY + (ImageAreaSize-sh)/2
	return image.Rect(x0, y0, x0+sw, y0+sh), scale
}

// ThumbRect is where the preview after step si (0-based) of n is drawn: ThumbSize squares, smaller when
// n of them would not fit under the image.
func ThumbRect(si, n int) image.Rectangle {
	size, pitch := ThumbSize, thumbPitch
	if n*thumbPitch > ImageAreaSize+gap {
		pitch = (ImageAreaSize + gap) / n
		size = pitch - 3
	}
	x := ImageAreaX + si*pitch
	return image.Rect(x, thumbY, x+size, thumbY+size)
}

// ThumbLabelPos is the top-left of the text under thumbnail si of n.
func ThumbLabelPos(si, n int) image.Point {
	return image.Pt(ThumbRect(si, n).Min.X, thumbY+ThumbSize+3)
}

// StatusPos is the top-left of the status line; ProgressRect the loading bar above it.
func StatusPos() image.Point { return image.Pt(panelX, statusY+12) }

// ProgressRect is the loading progress bar.
func ProgressRect() image.Rectangle { return image.Rect(panelX, statusY-8, Width-panelX, statusY+6) }

// Widget is a drawn control: a button when Action is not ActNone, else a text label.
type Widget struct {
	Rect    image.Rectangle
	Action  Action
	Text    string
	Enabled bool // buttons only: dimmed and inert when false
	On      bool // toggles: drawn highlighted
}

// Widgets lays out the controls for the current state.
func (s *State) Widgets() []Widget {
	var ws []Widget
	y := 16
	label := func(x, w int, text string) {
		ws = append(ws, Widget{Rect: image.Rect(x, y, x+w, y+buttonH), Text: text})
	}
	button := func(x, w int, a Action, text string) {
		ws = append(ws, Widget{Rect: image.Rect(x, y, x+w, y+buttonH), Action: a, Text: text, Enabled: s.Enabled(a)})
	}
	// stepper is "Name [<] value [>]".
	stepper := func(name string, down, up Action, value string) {
		x := panelX
		label(x, labelW, name)
		x += labelW
		button(x, stepW, down, "<")
		x += stepW + gap
		label(x, valueW, value)
		x += valueW + gap
		button(x, stepW, up, ">")
	}
	stepper("class", ActClassPrev, ActClassNext, s.ClassLabel())
	y += rowH
	stepper("seed", ActSeedDown, ActSeedUp, fmt.Sprint(s.Settings.Seed))
	button(panelX+labelW+2*stepW+valueW+3*gap, 48, ActDice, "dice")
	y += rowH
	// One row per family setting: booleans are toggles, everything else a stepper.
	for i, d := range s.Model.Settings {
		v := s.Settings.Values[d.Name]
		if d.Kind == gen.Bool {
			on := v == "true"
			text := d.Label + ": " + SettingLabel(d, v)
			if d.Name == "more-smooth" {
				text += " (M)"
			}
			button(panelX, 250, SettingUp(i), text)
			ws[len(ws)-1].On = on
		} else {
			stepper(d.Label, SettingDown(i), SettingUp(i), SettingLabel(d, v))
		}
		y += rowH
	}
	y += rowH + 8
	if s.Phase == Stopped {
		button(panelX, 150, ActGenerate, "Load (G)")
	} else {
		button(panelX, 150, ActGenerate, "Generate (G)")
	}
	button(panelX+150+gap, 96, ActCancel, "Cancel (Esc)")
	y += rowH
	button(panelX, 150, ActSave, "Save PNG (S)")
	if s.Model.Editor && s.EditReady {
		button(panelX+150+gap, 96, ActEdit, "Edit (E)")
		y += rowH
		stepper("edit", ActEditModePrev, ActEditModeNext, string(s.Edit.Mode))
	}
	y += rowH + 8
	noun := s.Model.StepNoun
	if s.Model.Reroll {
		stepper("keep", ActKDown, ActKUp, fmt.Sprintf("%d of %d %ss", s.K, s.rerollSteps(), noun))
		y += rowH
		button(panelX, 250, ActReroll, fmt.Sprintf("Reroll from %s %d (R)", noun, s.K+1))
		if s.Model.RandomAfter {
			y += rowH
			button(panelX, 250, ActRandomize, fmt.Sprintf("Randomize after %s %d (X)", noun, s.K))
		}
		y += rowH
	}
	// The code depths of a finished image (RQ): coarse to fine, below everything that was there before.
	if s.DepthView() {
		stepper("depth (, .)", ActDepthDown, ActDepthUp, s.DepthLabel())
	}
	return ws
}

// Hit is the enabled button under logical point p, or ActNone.
func (s *State) Hit(p image.Point) Action {
	for _, w := range s.Widgets() {
		if w.Action != ActNone && w.Enabled && p.In(w.Rect) {
			return w.Action
		}
	}
	return ActNone
}

// Title is the line above the status: "scale k/K" of the run in flight or the last one.
func (s *State) Title() string {
	switch s.Phase {
	case Loading:
		return "loading weights: " + s.Progress.Text()
	case Failed:
		return "failed"
	case Stopped:
		return "download cancelled: " + s.Progress.Text()
	}
	if s.Run == nil {
		return "ready: press Generate"
	}
	steps := s.Run.Steps
	if steps == 0 {
		steps = s.Steps()
	}
	return fmt.Sprintf("%s %d/%d, %s", s.Model.StepNoun, len(s.Run.Scales), steps, s.Run.Total.Round(1e6))
}

// noticeChars is how many characters of the notice fit on one line of the control panel.
const noticeChars = 42

// NoticeLines word-wraps a notice (e.g. "WebGPU unavailable: ...; using the CPU") to the control panel's
// width; NoticePos places line i of n at the bottom of the panel, above the progress bar.
func NoticeLines(s string) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > noticeChars {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// NoticePos is where line i of n notice lines is drawn.
func NoticePos(i, n int) image.Point {
	const pitch = 18
	return image.Pt(panelX, statusY-16-pitch*(n-i))
}
