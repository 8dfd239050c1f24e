package uistate

import (
	"fmt"
	"image"
	"slices"

	"github.com/webvar/webvar/core/edit"
	"github.com/webvar/webvar/core/gen"
)

// EditMode is what an edit keeps of its input image.
type EditMode string

const (
	EditInpaint  EditMode = "inpaint"  // regenerate the box, keep the rest
	EditOutpaint EditMode = "outpaint" // keep the box, regenerate the rest
	EditRefine   EditMode = "refine"   // keep the first K steps whole, generate the rest anew
	EditExpand   EditMode = "expand"   // FlexVAR: fit the image inside the output, generate the margins
	EditComplete EditMode = "complete" // RQ: keep the first K rows of codes, generate the rest
)

// EditSpec is the edit the controls describe; the input image itself is the driver's.
type EditSpec struct {
	Mode EditMode
	Box  [4]float64 // y0, x0, y1, x1 in fractions of the image (inpaint, outpaint)
	K    int        // steps (refine) or rows (complete) kept
	// NullClass edits without a class (the null class: plain in-painting), whatever the class control says.
	NullClass bool
	// Painted, when set, is a brush mask over the image instead of the box (inpaint, outpaint): MaskH x
	// MaskW values, 1 where painted. In-painting regenerates the painted area, out-painting keeps it.
	Painted      []float32
	MaskH, MaskW int
}

// painted reports whether anything is painted.
func (e EditSpec) painted() bool {
	for _, v := range e.Painted {
		if v > 0 {
			return true
		}
	}
	return false
}

// paintedKeep is the brush mask as a keep-mask on the gh x gw grid: the painted share of each cell's
// pixels, 1 - that for in-painting.
func (e EditSpec) paintedKeep(gh, gw int) []float32 {
	keep := make([]float32, gh*gw)
	for r := range gh {
		for c := range gw {
			y0, y1 := r*e.MaskH/gh, max((r+1)*e.MaskH/gh, r*e.MaskH/gh+1)
			x0, x1 := c*e.MaskW/gw, max((c+1)*e.MaskW/gw, c*e.MaskW/gw+1)
			var sum float32
			for y := y0; y < min(y1, e.MaskH); y++ {
				for x := x0; x < min(x1, e.MaskW); x++ {
					sum += e.Painted[y*e.MaskW+x]
				}
			}
			p := sum / float32((y1-y0)*(x1-x0))
			if e.Mode == EditInpaint {
				p = 1 - p
			}
			keep[r*gw+c] = p
		}
	}
	return keep
}

// EditModes lists the modes a family offers (nil: it does not edit).
func EditModes(family string) []EditMode {
	switch family {
	case "var":
		return []EditMode{EditInpaint, EditOutpaint, EditRefine}
	case "flexvar":
		return []EditMode{EditInpaint, EditOutpaint, EditRefine, EditExpand}
	case "rq":
		return []EditMode{EditComplete}
	}
	return nil
}

func isEditor(g gen.Generator) bool { _, ok := g.(gen.Editor); return ok }

// checkEdit says why ActEdit cannot start now.
func (s *State) checkEdit() error {
	e := s.Edit
	switch {
	case !s.Model.Editor:
		return fmt.Errorf("this %s model does not edit images", s.Model.Family)
	case !s.EditReady:
		return fmt.Errorf("load an image to edit first (a file, or the image just made)")
	case s.Phase != Idle:
		return fmt.Errorf("wait for the run in flight to end")
	case !slices.Contains(EditModes(s.Model.Family), e.Mode):
		return fmt.Errorf("edit mode %q: a %s model offers %v", e.Mode, s.Model.Family, EditModes(s.Model.Family))
	case (e.Mode == EditInpaint || e.Mode == EditOutpaint) && e.Painted != nil && len(e.Painted) != e.MaskH*e.MaskW:
		return fmt.Errorf("the painted mask has %d values for %dx%d pixels", len(e.Painted), e.MaskH, e.MaskW)
	case (e.Mode == EditInpaint || e.Mode == EditOutpaint) && e.Painted != nil && !e.painted():
		return fmt.Errorf("paint over the image first (or set the brush to 0 and drag a box)")
	case (e.Mode == EditInpaint || e.Mode == EditOutpaint) && e.Painted == nil && !(e.Box[0] < e.Box[2] && e.Box[1] < e.Box[3]):
		return fmt.Errorf("draw a box on the image first (drag across it)")
	case (e.Mode == EditRefine || e.Mode == EditComplete) && e.K < 1:
		return fmt.Errorf("keep at least one %s", map[EditMode]string{EditRefine: "step", EditComplete: "row"}[e.Mode])
	}
	return nil
}

// Request builds the edit of img (any size: fitted to the output) for generator g: the run's request
// req (labels, seed, settings) with the image and the keep-mask e describes.
func (e EditSpec) Request(g gen.Generator, img image.Image, req gen.Request) (gen.EditRequest, error) {
	ed, ok := g.(gen.Editor)
	if !ok {
		return gen.EditRequest{}, fmt.Errorf("a %s model does not edit images", g.Info().Family)
	}
	h, w, err := g.ImageSize(req.Settings)
	if err != nil {
		return gen.EditRequest{}, err
	}
	gh, gw, err := ed.EditGrid(req.Settings)
	if err != nil {
		return gen.EditRequest{}, err
	}
	if e.NullClass {
		req.Labels = []int{g.Info().Classes}
	}
	er := gen.EditRequest{Request: req}
	switch e.Mode {
	case EditExpand:
		er.Image, er.Keep, _ = edit.Place(img, h, w, gh, gw)
	default:
		er.Image, _ = edit.Fit(img, h, w)
	}
	switch e.Mode {
	case EditInpaint, EditOutpaint:
		if e.Painted != nil {
			if len(e.Painted) != e.MaskH*e.MaskW || e.MaskH < 1 || e.MaskW < 1 {
				return gen.EditRequest{}, fmt.Errorf("the painted mask has %d values for %dx%d pixels", len(e.Painted), e.MaskH, e.MaskW)
			}
			er.Keep = e.paintedKeep(gh, gw)
		} else {
			er.Keep = edit.BoxMask(gh, gw, e.Box, e.Mode == EditInpaint)
		}
	case EditRefine:
		er.Keep, er.KeepSteps = make([]float32, gh*gw), e.K
	case EditComplete:
		er.Keep = edit.RowsMask(gh, gw, e.K)
	}
	kept := 0
	for _, v := range er.Keep {
		if v > 0.5 {
			kept++
		}
	}
	switch {
	case e.Mode != EditRefine && kept == len(er.Keep):
		return gen.EditRequest{}, fmt.Errorf("the edit keeps the whole image: nothing to regenerate")
	case (e.Mode == EditOutpaint || e.Mode == EditExpand) && kept == 0:
		return gen.EditRequest{}, fmt.Errorf("the box covers no whole token of the %dx%d grid", gh, gw)
	}
	return er, nil
}

// defaultEditMode picks the family's first edit mode when the current one is not the family's (on load).
func (s *State) defaultEditMode() {
	if modes := EditModes(s.Model.Family); len(modes) > 0 && !slices.Contains(modes, s.Edit.Mode) {
		s.Edit.Mode = modes[0]
	}
}

// DragBox sets the edit box from a drag between two points of the image drawn at r (the box in fractions
// of the image, clamped to it); a drag outside r or of no extent changes nothing. It reports whether it
// set the box.
func (s *State) DragBox(r image.Rectangle, a, b image.Point) bool {
	if !a.In(r) || r.Dx() <= 0 || r.Dy() <= 0 {
		return false
	}
	f := func(v, lo, n int) float64 { return min(max(float64(v-lo)/float64(n), 0), 1) }
	y0, y1 := f(a.Y, r.Min.Y, r.Dy()), f(b.Y, r.Min.Y, r.Dy())
	x0, x1 := f(a.X, r.Min.X, r.Dx()), f(b.X, r.Min.X, r.Dx())
	box := [4]float64{min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1)}
	if !(box[0] < box[2] && box[1] < box[3]) {
		return false
	}
	s.Edit.Box = box
	s.Edit.Painted = nil
	return true
}
