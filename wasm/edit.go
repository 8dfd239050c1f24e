//go:build js

package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/gif" // input images: PNG, JPEG, GIF
	_ "image/jpeg"
	_ "image/png"
	"slices"
	"strconv"
	"strings"
	"syscall/js"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/edit"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/ui/uistate"
)

// The edit panel of the HTML page (index.html's #webvar-edit-panel): load an image (file picker, drag
// and drop onto the image, paste) or take the image just made, drag a box across the image (in- and
// out-painting), or keep the first k steps (refinement) or rows (an RQ model's completion), pick the mode
// and Edit. The run goes through the same app state as a generation (uistate.ActEdit) and the model's
// gen.Editor; the image is fitted to the model's size (uistate.EditSpec.Request).

// runOrder is a started run: a generation, or an edit of the page's input image.
type runOrder struct {
	req  gen.Request
	edit *uistate.EditSpec
}

// dragBox is a box being dragged across the canvas: its corners in fractions of the image.
type dragBox struct{ y0, x0, y1, x1 float64 }

// paintMask is the brush's mask over the image at the model's pixel size: 1 where painted.
type paintMask struct {
	h, w     int
	v        []float32
	painting bool
}

// stroke paints (or, with erase, clears) a disc of radius r (a fraction of the image's width) at (y, x)
// (fractions of the image).
func (m *paintMask) stroke(y, x, r float64, erase bool) {
	cy, cx, rad := y*float64(m.h), x*float64(m.w), r*float64(m.w)
	val := float32(1)
	if erase {
		val = 0
	}
	for py := max(0, int(cy-rad)); py < min(m.h, int(cy+rad)+1); py++ {
		for px := max(0, int(cx-rad)); px < min(m.w, int(cx+rad)+1); px++ {
			if dy, dx := float64(py)+0.5-cy, float64(px)+0.5-cx; dy*dy+dx*dx <= rad*rad {
				m.v[py*m.w+px] = val
			}
		}
	}
}

// show draws the painted area in translucent magenta on the overlay canvas (#webvar-edit-mask).
func (m *paintMask) show() {
	cv := byID("webvar-edit-mask")
	if !cv.Truthy() {
		return
	}
	if cv.Get("width").Int() != m.w || cv.Get("height").Int() != m.h {
		cv.Set("width", m.w)
		cv.Set("height", m.h)
	}
	pix := make([]byte, 4*m.w*m.h)
	for i, v := range m.v {
		if v > 0 {
			pix[4*i], pix[4*i+2], pix[4*i+3] = 230, 230, 140
		}
	}
	u8 := js.Global().Get("Uint8ClampedArray").New(len(pix))
	js.CopyBytesToJS(u8, pix)
	cv.Call("getContext", "2d").Call("putImageData", js.Global().Get("ImageData").New(u8, m.w, m.h), 0, 0)
}

// brush is the brush radius the panel's slider gives (a fraction of the image's width; 0: box mode) and
// whether it erases.
func brush() (r float64, erase bool) {
	if el := byID("webvar-edit-brush"); el.Truthy() {
		r, _ = strconv.ParseFloat(el.Get("value").String(), 64)
	}
	if el := byID("webvar-edit-erase"); el.Truthy() {
		erase = el.Get("checked").Bool()
	}
	return r, erase
}

// maxEditBytes bounds an input image file (decoded images are bounded by the decoders' own checks and
// then fitted to the model's size).
const maxEditBytes = 64 << 20

// setupEdit wires the edit panel's inputs (they exist before the model loads; showEditPanel shows them).
func (pg *page) setupEdit() {
	pg.on("webvar-edit", uistate.ActEdit)
	if el := byID("webvar-edit-file"); el.Truthy() {
		el.Call("addEventListener", "change", js.FuncOf(func(this js.Value, _ []js.Value) any {
			if files := this.Get("files"); files.Truthy() && files.Length() > 0 {
				go pg.loadEditFile(files.Index(0))
			}
			return nil
		}))
	}
	if el := byID("webvar-edit-clear"); el.Truthy() {
		el.Call("addEventListener", "click", js.FuncOf(func(js.Value, []js.Value) any {
			pg.mu.Lock()
			if pg.paint != nil {
				clear(pg.paint.v)
				pg.paint.show()
			}
			pg.st.Edit.Box = [4]float64{}
			pg.mu.Unlock()
			showBox([4]float64{})
			return nil
		}))
	}
	if el := byID("webvar-edit-use"); el.Truthy() {
		el.Call("addEventListener", "click", js.FuncOf(func(js.Value, []js.Value) any {
			pg.mu.Lock()
			last := pg.last
			pg.mu.Unlock()
			if last == nil {
				return nil
			}
			img, err := core.ToImage(*last, 0)
			if err != nil {
				setText("webvar-edit-note", err.Error())
				return nil
			}
			pg.setEditImage(img, "the image just made")
			return nil
		}))
	}
	// Paste anywhere on the page, or drop a file onto the image.
	doc.Call("addEventListener", "paste", js.FuncOf(func(_ js.Value, args []js.Value) any {
		if files := args[0].Get("clipboardData").Get("files"); files.Truthy() && files.Length() > 0 {
			go pg.loadEditFile(files.Index(0))
		}
		return nil
	}))
	cv := byID("webvar-canvas")
	if !cv.Truthy() {
		return
	}
	cv.Call("addEventListener", "dragover", js.FuncOf(func(_ js.Value, args []js.Value) any {
		args[0].Call("preventDefault")
		return nil
	}))
	cv.Call("addEventListener", "drop", js.FuncOf(func(_ js.Value, args []js.Value) any {
		args[0].Call("preventDefault")
		if files := args[0].Get("dataTransfer").Get("files"); files.Truthy() && files.Length() > 0 {
			go pg.loadEditFile(files.Index(0))
		}
		return nil
	}))
	// A box: drag across the image.
	frac := func(e js.Value) (y, x float64) {
		r := cv.Call("getBoundingClientRect")
		w, h := r.Get("width").Float(), r.Get("height").Float()
		y = (e.Get("clientY").Float() - r.Get("top").Float()) / max(h, 1)
		x = (e.Get("clientX").Float() - r.Get("left").Float()) / max(w, 1)
		return min(max(y, 0), 1), min(max(x, 0), 1)
	}
	cv.Call("addEventListener", "mousedown", js.FuncOf(func(_ js.Value, args []js.Value) any {
		y, x := frac(args[0])
		pg.mu.Lock()
		defer pg.mu.Unlock()
		if r, erase := brush(); r > 0 && pg.paint != nil {
			pg.paint.painting = true
			pg.paint.stroke(y, x, r, erase)
			pg.paint.show()
			return nil
		}
		pg.drag = &dragBox{y, x, y, x}
		return nil
	}))
	cv.Call("addEventListener", "mousemove", js.FuncOf(func(_ js.Value, args []js.Value) any {
		pg.mu.Lock()
		defer pg.mu.Unlock()
		if m := pg.paint; m != nil && m.painting {
			y, x := frac(args[0])
			r, erase := brush()
			m.stroke(y, x, r, erase)
			m.show()
			return nil
		}
		if pg.drag != nil {
			pg.drag.y1, pg.drag.x1 = frac(args[0])
			showBox(pg.drag.box())
		}
		return nil
	}))
	cv.Call("addEventListener", "mouseup", js.FuncOf(func(_ js.Value, args []js.Value) any {
		pg.mu.Lock()
		if pg.paint != nil {
			pg.paint.painting = false
		}
		if pg.drag != nil {
			pg.drag.y1, pg.drag.x1 = frac(args[0])
			b := pg.drag.box()
			pg.drag = nil
			pg.st.Edit.Box = b
			showBox(b)
		}
		pg.mu.Unlock()
		pg.render()
		return nil
	}))
}

// box is the dragged box as y0, x0, y1, x1 with y0 <= y1 and x0 <= x1.
func (d *dragBox) box() [4]float64 {
	return [4]float64{min(d.y0, d.y1), min(d.x0, d.x1), max(d.y0, d.y1), max(d.x0, d.x1)}
}

// showBox outlines a box (fractions of the image) over the canvas.
func showBox(b [4]float64) {
	el := byID("webvar-edit-box")
	if !el.Truthy() {
		return
	}
	st := el.Get("style")
	if !(b[0] < b[2] && b[1] < b[3]) {
		st.Set("display", "none")
		return
	}
	pct := func(v float64) string { return strconv.FormatFloat(100*v, 'f', 2, 64) + "%" }
	st.Set("top", pct(b[0]))
	st.Set("left", pct(b[1]))
	st.Set("height", pct(b[2]-b[0]))
	st.Set("width", pct(b[3]-b[1]))
	st.Set("display", "block")
}

// loadEditFile reads a File (from the picker, a drop or a paste) and decodes it as the input image.
func (pg *page) loadEditFile(f js.Value) {
	name := f.Get("name").String()
	if size := f.Get("size").Int(); size > maxEditBytes {
		setText("webvar-edit-note", fmt.Sprintf("%s: %d bytes: images of at most %d MB", name, size, maxEditBytes>>20))
		return
	}
	buf, err := await(f.Call("arrayBuffer"))
	if err != nil {
		setText("webvar-edit-note", fmt.Sprintf("%s: %v", name, err))
		return
	}
	u8 := js.Global().Get("Uint8Array").New(buf)
	data := make([]byte, u8.Length())
	js.CopyBytesToGo(data, u8)
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		setText("webvar-edit-note", fmt.Sprintf("%s: not an image this page reads (PNG, JPEG, GIF): %v", name, err))
		return
	}
	pg.setEditImage(img, fmt.Sprintf("%s (%s, %dx%d)", name, format, img.Bounds().Dx(), img.Bounds().Dy()))
}

// await waits for a JS promise.
func await(p js.Value) (js.Value, error) {
	done := make(chan struct{})
	var v js.Value
	var err error
	then := js.FuncOf(func(_ js.Value, args []js.Value) any {
		v = args[0]
		close(done)
		return nil
	})
	catch := js.FuncOf(func(_ js.Value, args []js.Value) any {
		err = fmt.Errorf("%s", args[0].Call("toString").String())
		close(done)
		return nil
	})
	defer then.Release()
	defer catch.Release()
	p.Call("then", then).Call("catch", catch)
	<-done
	return v, err
}

// setEditImage makes img the edit input and shows it on the canvas as the model will see it (fitted).
func (pg *page) setEditImage(img image.Image, what string) {
	pg.mu.Lock()
	pg.editImg = img
	pg.st.EditReady = true
	g := pg.app
	settings := pg.st.Settings.Values
	pg.mu.Unlock()
	note := "editing " + what
	if g != nil {
		if h, w, err := g.g.ImageSize(settings); err == nil {
			pg.mu.Lock()
			pg.paint = &paintMask{h: h, w: w, v: make([]float32, h*w)}
			pg.paint.show()
			pg.mu.Unlock()
			in, crop := edit.Fit(img, h, w)
			if b := img.Bounds(); crop != b {
				note += fmt.Sprintf(", cropped to %v and resized to %dx%d", crop, w, h)
			}
			unit := core.HostTensor{Shape: in.Shape, Data: make([]float32, len(in.Data))}
			for i, v := range in.Data {
				unit.Data[i] = (v + 1) / 2
			}
			draw(unit)
		}
	}
	setText("webvar-edit-note", note+": drag a box across the image for in/out-painting")
	pg.render()
}

// showEditPanel shows the panel with the model's edit modes (hidden for models that do not edit).
func (pg *page) showEditPanel() {
	pg.mu.Lock()
	modes := uistate.EditModes(pg.st.Model.Family)
	editor := pg.st.Model.Editor
	pg.mu.Unlock()
	panel := byID("webvar-edit-panel")
	if !panel.Truthy() {
		return
	}
	if !editor || len(modes) == 0 {
		panel.Set("hidden", true)
		return
	}
	sel := byID("webvar-edit-mode")
	sel.Set("innerHTML", "")
	for _, m := range modes {
		sel.Call("add", js.Global().Get("Option").New(string(m), string(m)))
	}
	panel.Set("hidden", false)
	pg.render()
}

// readEditInputs copies the panel's mode and k into the state (pg.mu held).
func (pg *page) readEditInputs() {
	if el := byID("webvar-edit-mode"); el.Truthy() && el.Get("value").String() != "" {
		pg.st.Edit.Mode = uistate.EditMode(el.Get("value").String())
	}
	if el := byID("webvar-edit-k"); el.Truthy() {
		if k, err := strconv.Atoi(el.Get("value").String()); err == nil {
			pg.st.Edit.K = k
		}
	}
	if el := byID("webvar-edit-null"); el.Truthy() {
		pg.st.Edit.NullClass = el.Get("checked").Bool()
	}
	pg.st.Edit.Painted, pg.st.Edit.MaskH, pg.st.Edit.MaskW = nil, 0, 0
	if r, _ := brush(); r > 0 && pg.paint != nil {
		pg.st.Edit.Painted = append([]float32(nil), pg.paint.v...)
		pg.st.Edit.MaskH, pg.st.Edit.MaskW = pg.paint.h, pg.paint.w
	}
}

// generateOrEdit runs the order: a generation, or an edit of the input image.
func (pg *page) generateOrEdit(ctx context.Context, a *app, order runOrder, onStep func(gen.Step) error) (*gen.Result, error) {
	if order.edit == nil {
		return a.g.Generate(ctx, order.req, onStep)
	}
	pg.mu.Lock()
	img := pg.editImg
	pg.mu.Unlock()
	ed, ok := a.g.(gen.Editor)
	if !ok || img == nil {
		return nil, fmt.Errorf("nothing to edit")
	}
	er, err := order.edit.Request(a.g, img, order.req)
	if err != nil {
		return nil, err
	}
	// The box or the painted mask stays over the image while the steps come in (what is regenerated),
	// and goes when the edit ends (the box stays in the state for the next edit).
	defer func() {
		showBox([4]float64{})
		pg.mu.Lock()
		if pg.paint != nil {
			clear(pg.paint.v)
			pg.paint.show()
		}
		pg.mu.Unlock()
	}()
	return ed.Edit(ctx, er, onStep)
}

// fetchImage downloads and decodes an image URL.
func fetchImage(url string) (image.Image, error) {
	resp, err := await(js.Global().Call("fetch", url))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", url, err)
	}
	if !resp.Get("ok").Bool() {
		return nil, fmt.Errorf("%s: HTTP %d", url, resp.Get("status").Int())
	}
	buf, err := await(resp.Call("arrayBuffer"))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", url, err)
	}
	u8 := js.Global().Get("Uint8Array").New(buf)
	if u8.Length() > maxEditBytes {
		return nil, fmt.Errorf("%s: %d bytes: images of at most %d MB", url, u8.Length(), maxEditBytes>>20)
	}
	data := make([]byte, u8.Length())
	js.CopyBytesToGo(data, u8)
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: not an image this page reads (PNG, JPEG, GIF): %v", url, err)
	}
	return img, nil
}

// urlEdit sets up the edit the URL describes (image, mask, edit, box, keep, no_class) and reports
// whether it is ready to run; a problem is named in the edit note and the status line.
func (pg *page) urlEdit() bool {
	p := pg.url
	bad := func(err error) bool {
		setText("webvar-edit-note", err.Error())
		setText("webvar-status", "edit: "+err.Error())
		setState("ready")
		return false
	}
	img, err := fetchImage(p.editImage)
	if err != nil {
		return bad(err)
	}
	pg.setEditImage(img, p.editImage)
	pg.mu.Lock()
	defer pg.mu.Unlock()
	spec := &pg.st.Edit
	spec.Mode, spec.NullClass = uistate.EditInpaint, p.editNoClass
	if modes := uistate.EditModes(pg.st.Model.Family); len(modes) > 0 && !slices.Contains(modes, spec.Mode) {
		spec.Mode = modes[0]
	}
	if p.editMode != "" {
		spec.Mode = uistate.EditMode(p.editMode)
	}
	if p.editKeep != "" {
		k, err := strconv.Atoi(p.editKeep)
		if err != nil {
			return bad(fmt.Errorf("URL parameter keep=%q: %v", p.editKeep, err))
		}
		spec.K = k
	}
	if p.editBox != "" {
		var b [4]float64
		parts := strings.Split(p.editBox, ",")
		if len(parts) != 4 {
			return bad(fmt.Errorf("URL parameter box=%q: want y0,x0,y1,x1 in fractions of the image", p.editBox))
		}
		for i, s := range parts {
			if b[i], err = strconv.ParseFloat(strings.TrimSpace(s), 64); err != nil {
				return bad(fmt.Errorf("URL parameter box=%q: %v", p.editBox, err))
			}
		}
		spec.Box = b
		showBox(b)
	}
	if p.editMask != "" && pg.paint != nil {
		pg.mu.Unlock()
		m, err := fetchImage(p.editMask)
		pg.mu.Lock()
		if err != nil {
			return bad(err)
		}
		// White = regenerate, as webvar edit -mask: the painted (regenerated) share of each pixel.
		b := m.Bounds()
		for y := range pg.paint.h {
			for x := range pg.paint.w {
				r, g, bl, _ := m.At(b.Min.X+x*b.Dx()/pg.paint.w, b.Min.Y+y*b.Dy()/pg.paint.h).RGBA()
				pg.paint.v[y*pg.paint.w+x] = float32(r+g+bl) / (3 * 65535)
			}
		}
		pg.paint.show()
		if b.Dx() != pg.paint.w || b.Dy() != pg.paint.h {
			setText("webvar-edit-note", fmt.Sprintf("mask %dx%d resized to the image's %dx%d", b.Dx(), b.Dy(), pg.paint.w, pg.paint.h))
		}
		spec.Painted = append([]float32(nil), pg.paint.v...)
		spec.MaskH, spec.MaskW = pg.paint.h, pg.paint.w
		spec.Mode = uistate.EditInpaint
	}
	// The panel shows the URL's choices (a run reads them back).
	setValue("webvar-edit-mode", string(spec.Mode))
	if spec.K > 0 {
		setValue("webvar-edit-k", strconv.Itoa(spec.K))
	}
	if el := byID("webvar-edit-null"); el.Truthy() {
		el.Set("checked", spec.NullClass)
	}
	if spec.Painted != nil {
		setValue("webvar-edit-brush", "0.1")
	}
	return true
}
