package ui

import (
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // dropped edit inputs: PNG, JPEG, GIF
	_ "image/jpeg"
	_ "image/png"
	"io/fs"
	"time"

	"github.com/hajimehoshi/ebiten/v2"
	"github.com/hajimehoshi/ebiten/v2/inpututil"
	"github.com/hajimehoshi/ebiten/v2/text/v2"
	"github.com/hajimehoshi/ebiten/v2/vector"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/edit"
	"github.com/webvar/webvar/ui/uistate"
)

var (
	colBackground = color.RGBA{0x20, 0x22, 0x26, 0xff}
	colPanel      = color.RGBA{0x2c, 0x2f, 0x35, 0xff}
	colButton     = color.RGBA{0x3d, 0x5a, 0x80, 0xff}
	colButtonOn   = color.RGBA{0x5b, 0x8c, 0x4a, 0xff}
	colButtonOff  = color.RGBA{0x38, 0x3a, 0x40, 0xff}
	colText       = color.RGBA{0xe8, 0xe8, 0xe8, 0xff}
	colTextDim    = color.RGBA{0x80, 0x80, 0x80, 0xff}
	colBar        = color.RGBA{0x4a, 0x90, 0xd9, 0xff}
	colError      = color.RGBA{0xe0, 0x70, 0x60, 0xff}
)

// keys are the keyboard shortcuts (shown in the button labels).
var keys = []struct {
	k ebiten.Key
	a uistate.Action
}{
	{ebiten.KeyArrowLeft, uistate.ActClassPrev},
	{ebiten.KeyArrowRight, uistate.ActClassNext},
	{ebiten.KeyArrowDown, uistate.ActSeedDown},
	{ebiten.KeyArrowUp, uistate.ActSeedUp},
	{ebiten.KeyD, uistate.ActDice},
	{ebiten.KeyG, uistate.ActGenerate},
	{ebiten.KeyEnter, uistate.ActGenerate},
	{ebiten.KeyEscape, uistate.ActCancel},
	{ebiten.KeyS, uistate.ActSave},
	{ebiten.KeyBracketLeft, uistate.ActKDown},
	{ebiten.KeyBracketRight, uistate.ActKUp},
	{ebiten.KeyR, uistate.ActReroll},
	{ebiten.KeyX, uistate.ActRandomize},
	{ebiten.KeyE, uistate.ActEdit},
	{ebiten.KeyComma, uistate.ActDepthDown},
	{ebiten.KeyPeriod, uistate.ActDepthUp},
}

// input turns this tick's clicks, taps and key presses into actions.
func (g *Game) input() []uistate.Action {
	var acts []uistate.Action
	if inpututil.IsMouseButtonJustPressed(ebiten.MouseButtonLeft) {
		x, y := ebiten.CursorPosition()
		acts = append(acts, g.st.Hit(image.Pt(x, y)))
		if p := image.Pt(x, y); g.editImg != nil && p.In(g.imageRect()) {
			g.dragFrom = &p // a box across the image (edits)
		}
	}
	if g.dragFrom != nil && inpututil.IsMouseButtonJustReleased(ebiten.MouseButtonLeft) {
		x, y := ebiten.CursorPosition()
		g.st.DragBox(g.imageRect(), *g.dragFrom, image.Pt(x, y))
		g.dragFrom = nil
	}
	// U: edit the image just made.
	if inpututil.IsKeyJustPressed(ebiten.KeyU) && g.st.Phase == uistate.Idle {
		if latest := g.st.Latest(); latest != nil && g.st.Model.Editor {
			g.editImg, g.editShow, g.st.EditReady = latest, nil, true
			g.st.Message = "editing the image just made: drag a box across it, pick the mode, Edit (E)"
		}
	}
	// A dropped image file becomes the edit input.
	if files := ebiten.DroppedFiles(); files != nil {
		g.dropped(files)
	}
	for _, id := range inpututil.AppendJustPressedTouchIDs(nil) {
		x, y := ebiten.TouchPosition(id)
		acts = append(acts, g.st.Hit(image.Pt(x, y)))
	}
	for _, k := range keys {
		if inpututil.IsKeyJustPressed(k.k) {
			acts = append(acts, k.a)
		}
	}
	// M toggles more smooth where the family has it.
	if inpututil.IsKeyJustPressed(ebiten.KeyM) {
		acts = append(acts, g.st.SettingAction("more-smooth"))
	}
	// Digits type a class number (uistate.State.TypeDigit).
	for _, r := range ebiten.AppendInputChars(nil) {
		if r >= '0' && r <= '9' {
			g.st.TypeDigit(int(r-'0'), time.Now())
		}
	}
	return acts
}

func (g *Game) draw(screen *ebiten.Image) {
	screen.Fill(colBackground)
	vector.DrawFilledRect(screen, 0, 0, uistate.ImageAreaX-8, uistate.Height-48, colPanel, false)
	for _, w := range g.st.Widgets() {
		g.drawWidget(screen, w)
	}
	g.drawImages(screen)

	if g.st.Phase == uistate.Loading || g.st.Phase == uistate.Stopped {
		r := uistate.ProgressRect()
		fillRect(screen, r, colButtonOff)
		done := r
		done.Max.X = r.Min.X + int(float64(r.Dx())*g.st.Progress.Fraction())
		fillRect(screen, done, colBar)
	}
	notice := uistate.NoticeLines(g.cfg.Notice)
	for i, line := range notice {
		q := uistate.NoticePos(i, len(notice))
		g.text(screen, line, q.X, q.Y, colTextDim)
	}
	p := uistate.StatusPos()
	g.text(screen, g.st.Title(), p.X, p.Y-2, colText)
	msg := colTextDim
	if g.st.Phase == uistate.Failed || (g.st.Run != nil && g.st.Run.Err != nil) {
		msg = colError
	}
	g.text(screen, g.st.Message, p.X+360, p.Y-2, msg)
}

func (g *Game) drawWidget(screen *ebiten.Image, w uistate.Widget) {
	r := w.Rect
	if w.Action == uistate.ActNone {
		g.text(screen, w.Text, r.Min.X+4, r.Min.Y+6, colText)
		return
	}
	bg, fg := colButton, colText
	switch {
	case !w.Enabled:
		bg, fg = colButtonOff, colTextDim
	case w.On:
		bg = colButtonOn
	}
	fillRect(screen, r, bg)
	tw, _ := text.Measure(w.Text, g.face, 0)
	g.text(screen, w.Text, r.Min.X+(r.Dx()-int(tw))/2, r.Min.Y+6, fg)
}

// drawImages draws the latest preview into the image area and every scale's preview as a thumbnail
// with the time that scale took.
func (g *Game) drawImages(screen *ebiten.Image) {
	area := image.Rect(uistate.ImageAreaX, uistate.ImageAreaY, uistate.ImageAreaX+uistate.ImageAreaSize,
		uistate.ImageAreaY+uistate.ImageAreaSize)
	fillRect(screen, area, colPanel)
	run := g.st.Run
	if run == nil {
		g.drawEditInput(screen)
		return
	}
	if g.imageOf != run.ID {
		for _, im := range g.images {
			im.Deallocate()
		}
		clear(g.images)
		g.imageOf = run.ID
	}
	if latest := g.st.Shown(); latest != nil {
		// Nearest-neighbour at an integer scale (DrawImageOptions' default filter): every generated
		// pixel becomes an exact scale x scale block, which the screenshot test relies on.
		r, scale := uistate.ImageRect(latest.Bounds().Dx(), latest.Bounds().Dy())
		op := &ebiten.DrawImageOptions{}
		if scale < 1 {
			op.Filter = ebiten.FilterLinear // larger than the area: shrunk to fit
		}
		op.GeoM.Scale(scale, scale)
		op.GeoM.Translate(float64(r.Min.X), float64(r.Min.Y))
		screen.DrawImage(g.image(latest), op)
		// While an in- or out-painting runs, its box marks what is regenerated (or kept).
		if run.Kind == "edit (inpaint)" || run.Kind == "edit (outpaint)" {
			if !run.Finished {
				strokeBox(screen, r, g.st.Edit.Box)
			}
		}
	}
	n := max(run.Steps, len(run.Scales))
	for i, s := range run.Scales {
		tr := uistate.ThumbRect(i, n)
		if s.Preview != nil {
			op := &ebiten.DrawImageOptions{Filter: ebiten.FilterLinear}
			b := s.Preview.Bounds()
			f := float64(tr.Dx()) / float64(max(b.Dx(), b.Dy()))
			op.GeoM.Scale(f, f)
			op.GeoM.Translate(float64(tr.Min.X), float64(tr.Min.Y))
			screen.DrawImage(g.image(s.Preview), op)
		}
		lp := uistate.ThumbLabelPos(i, n)
		g.smallText(screen, fmt.Sprintf("%d: %s", i+1, fmtDur(s.Took)), lp.X, lp.Y)
	}
}

// image uploads a preview once per run.
func (g *Game) image(img *image.NRGBA) *ebiten.Image {
	if im, ok := g.images[img]; ok {
		return im
	}
	im := ebiten.NewImageFromImage(img)
	g.images[img] = im
	return im
}

func (g *Game) text(screen *ebiten.Image, s string, x, y int, c color.Color) {
	op := &text.DrawOptions{}
	op.GeoM.Translate(float64(x), float64(y))
	op.ColorScale.ScaleWithColor(c)
	text.Draw(screen, s, g.face, op)
}

func (g *Game) smallText(screen *ebiten.Image, s string, x, y int) {
	op := &text.DrawOptions{}
	op.GeoM.Translate(float64(x), float64(y))
	op.ColorScale.ScaleWithColor(colTextDim)
	text.Draw(screen, s, &text.GoTextFace{Source: g.face.Source, Size: 10}, op)
}

func fillRect(dst *ebiten.Image, r image.Rectangle, c color.Color) {
	vector.DrawFilledRect(dst, float32(r.Min.X), float32(r.Min.Y), float32(r.Dx()), float32(r.Dy()), c, false)
}

// fmtDur is a short duration for a thumbnail label: "35ms", "1.2s".
func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// imageRect is where the image shown now is drawn: the latest run's, else the edit input's.
func (g *Game) imageRect() image.Rectangle {
	if latest := g.st.Latest(); latest != nil {
		r, _ := uistate.ImageRect(latest.Bounds().Dx(), latest.Bounds().Dy())
		return r
	}
	if g.editShow != nil {
		r, _ := uistate.ImageRect(g.editShow.Bounds().Dx(), g.editShow.Bounds().Dy())
		return r
	}
	return image.Rectangle{}
}

// drawEditInput shows the edit input fitted to the model's size (before any run) and the edit box.
func (g *Game) drawEditInput(screen *ebiten.Image) {
	if g.editImg == nil || g.gen == nil {
		return
	}
	if g.editShow == nil {
		h, w, err := g.gen.ImageSize(g.st.Settings.Values)
		if err != nil {
			return
		}
		in, _ := edit.Fit(g.editImg, h, w)
		unit := core.HostTensor{Shape: in.Shape, Data: make([]float32, len(in.Data))}
		for i, v := range in.Data {
			unit.Data[i] = (v + 1) / 2
		}
		img, err := core.ToImage(unit, 0)
		if err != nil {
			return
		}
		g.editShow = ebiten.NewImageFromImage(img)
	}
	r, scale := uistate.ImageRect(g.editShow.Bounds().Dx(), g.editShow.Bounds().Dy())
	op := &ebiten.DrawImageOptions{}
	op.GeoM.Scale(scale, scale)
	op.GeoM.Translate(float64(r.Min.X), float64(r.Min.Y))
	screen.DrawImage(g.editShow, op)
	strokeBox(screen, r, g.st.Edit.Box)
}

// strokeBox outlines a box (fractions y0, x0, y1, x1 of the image drawn at r); nothing for an empty box.
func strokeBox(screen *ebiten.Image, r image.Rectangle, b [4]float64) {
	if !(b[0] < b[2] && b[1] < b[3]) {
		return
	}
	x0, y0 := float32(r.Min.X)+float32(b[1])*float32(r.Dx()), float32(r.Min.Y)+float32(b[0])*float32(r.Dy())
	x1, y1 := float32(r.Min.X)+float32(b[3])*float32(r.Dx()), float32(r.Min.Y)+float32(b[2])*float32(r.Dy())
	vector.StrokeRect(screen, x0, y0, x1-x0, y1-y0, 2, color.RGBA{0xe0, 0x20, 0xe0, 0xff}, false)
}

// dropped makes the first readable image among the dropped files the edit input.
func (g *Game) dropped(files fs.FS) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return
	}
	for _, e := range entries {
		f, err := files.Open(e.Name())
		if err != nil {
			continue
		}
		img, _, err := image.Decode(f)
		f.Close()
		if err != nil {
			g.st.Message = fmt.Sprintf("%s: not an image this app reads (PNG, JPEG, GIF)", e.Name())
			continue
		}
		g.editImg, g.editShow, g.st.EditReady = img, nil, true
		g.st.Message = fmt.Sprintf("editing %s (%dx%d): drag a box across it, pick the mode, Edit (E)", e.Name(), img.Bounds().Dx(), img.Bounds().Dy())
		return
	}
}
