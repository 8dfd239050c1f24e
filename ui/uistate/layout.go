package uistate

import (
	"fmt"
	"image"
	"strings"
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
	ActCFGDown
	ActCFGUp
	ActTopKDown
	ActTopKUp
	ActTopPDown
	ActTopPUp
	ActMoreSmooth
	ActGenerate
	ActCancel
	ActSave
	ActKDown
	ActKUp
	ActReroll
	ActRandomize
)

// The canvas is laid out in fixed logical pixels: controls on the left, the image on the right at an
// integer nearest-neighbour scale inside ImageArea (so a screenshot holds the exact generated pixels), the
// per-scale previews below it and the status line at the bottom.
const (
	Width, Height = 860, 660
	panelX        = 16
	rowH          = 36 // row pitch
	buttonH       = 28
	labelW        = 64
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
	ImageAreaX, ImageAreaY, ImageAreaSize = 336, 16, 512
)

// ImageRect is where an image of side size is drawn: scaled by the largest integer factor that fits
// ImageArea (at least 1) and centred in it. Screenshot tests crop this rectangle.
func ImageRect(size int) (r image.Rectangle, scale int) {
	scale = max(1, ImageAreaSize/max(size, 1))
	w := size * scale
	x0 := ImageAreaX + max(0, (ImageAreaSize-w)/2)
	y0 := ImageAreaY + max(0, (ImageAreaSize-w)/2)
	return image.Rect(x0, y0, x0+w, y0+w), scale
}

// ThumbRect is where the preview after scale si (0-based) is drawn.
func ThumbRect(si int) image.Rectangle {
	x := ImageAreaX + si*thumbPitch
	return image.Rect(x, thumbY, x+ThumbSize, thumbY+ThumbSize)
}

// ThumbLabelPos is the top-left of the text under thumbnail si.
func ThumbLabelPos(si int) image.Point { return image.Pt(ThumbRect(si).Min.X, thumbY+ThumbSize+3) }

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
	stepper("cfg", ActCFGDown, ActCFGUp, fmt.Sprintf("%.1f", s.Settings.CFG))
	y += rowH
	stepper("top-k", ActTopKDown, ActTopKUp, s.TopKLabel())
	y += rowH
	stepper("top-p", ActTopPDown, ActTopPUp, s.TopPLabel())
	y += rowH
	smooth := "more smooth: off (M)"
	if s.Settings.MoreSmooth {
		smooth = "more smooth: on (M)"
	}
	button(panelX, 250, ActMoreSmooth, smooth)
	ws[len(ws)-1].On = s.Settings.MoreSmooth
	y += rowH + 8
	if s.Phase == Stopped {
		button(panelX, 150, ActGenerate, "Load (G)")
	} else {
		button(panelX, 150, ActGenerate, "Generate (G)")
	}
	button(panelX+150+gap, 96, ActCancel, "Cancel (Esc)")
	y += rowH
	button(panelX, 150, ActSave, "Save PNG (S)")
	y += rowH + 8
	stepper("keep", ActKDown, ActKUp, fmt.Sprintf("%d of %d scales", s.K, len(s.Model.PatchNums)))
	y += rowH
	button(panelX, 250, ActReroll, fmt.Sprintf("Reroll from scale %d (R)", s.K+1))
	y += rowH
	button(panelX, 250, ActRandomize, fmt.Sprintf("Randomize after scale %d (X)", s.K))
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
	return fmt.Sprintf("scale %d/%d, %s", len(s.Run.Scales), len(s.Model.PatchNums), s.Run.Total.Round(1e6))
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
