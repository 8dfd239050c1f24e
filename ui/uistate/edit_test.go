package uistate

import (
	"context"
	"fmt"
	"image"
	"strings"
	"testing"

	"github.com/webvar/webvar/core/gen"
)

// fakeEditor is a generator of 32x64 images on a 2x4 token grid that edits.
type fakeEditor struct{ family string }

func (f fakeEditor) Info() gen.Info {
	return gen.Info{Family: f.family, Classes: 3, StepNoun: "step", Steps: 2}
}
func (f fakeEditor) Settings() []gen.Setting                  { return nil }
func (f fakeEditor) ImageSize(gen.Settings) (int, int, error) { return 32, 64, nil }
func (f fakeEditor) EditGrid(gen.Settings) (int, int, error)  { return 2, 4, nil }
func (f fakeEditor) Generate(context.Context, gen.Request, func(gen.Step) error) (*gen.Result, error) {
	return nil, nil
}
func (f fakeEditor) Edit(context.Context, gen.EditRequest, func(gen.Step) error) (*gen.Result, error) {
	return nil, nil
}

// Edit starts only with a model that edits, an image, a mode of its family and what the mode needs; the
// command carries the spec.
func TestEditAction(t *testing.T) {
	s := New(Defaults())
	s.OnLoaded(InfoOf(fakeEditor{"flexvar"}, nil), nil)
	if s.Enabled(ActEdit) {
		t.Fatal("edit enabled without an image")
	}
	if cmd := s.Apply(ActEdit); cmd.Kind != None || !strings.Contains(s.Message, "load an image") {
		t.Fatalf("no image: %v %q", cmd.Kind, s.Message)
	}
	s.EditReady = true
	s.Edit = EditSpec{Mode: EditInpaint}
	if cmd := s.Apply(ActEdit); cmd.Kind != None || !strings.Contains(s.Message, "box") {
		t.Fatalf("no box: %v %q", cmd.Kind, s.Message)
	}
	s.Edit = EditSpec{Mode: EditComplete, K: 1}
	if cmd := s.Apply(ActEdit); cmd.Kind != None || !strings.Contains(s.Message, "offers") {
		t.Fatalf("RQ's mode on FlexVAR: %v %q", cmd.Kind, s.Message)
	}
	s.Edit = EditSpec{Mode: EditOutpaint, Box: [4]float64{0, 0, 1, 0.5}}
	cmd := s.Apply(ActEdit)
	if cmd.Kind != Start || cmd.Edit == nil || cmd.Edit.Mode != EditOutpaint || s.Phase != Generating || s.Run.Kind != "edit (outpaint)" {
		t.Fatalf("edit: %+v, phase %v, run %+v", cmd, s.Phase, s.Run)
	}
	m := New(Defaults())
	m.OnLoaded(ModelInfo{Family: "mar", Classes: 3, StepNoun: "iteration", Steps: 2}, nil)
	m.EditReady = true
	if m.Enabled(ActEdit) || m.Apply(ActEdit).Kind != None || !strings.Contains(m.Message, "does not edit") {
		t.Fatalf("MAR edit: %q", m.Message)
	}
}

// EditSpec.Request fits the image to the output, makes the mode's keep-mask on the edit grid, and refuses
// edits that keep everything or nothing.
func TestEditSpecRequest(t *testing.T) {
	g := fakeEditor{"flexvar"}
	img := image.NewNRGBA(image.Rect(0, 0, 100, 100))
	req := gen.Request{Labels: []int{1}, Seed: 4}
	er, err := EditSpec{Mode: EditInpaint, Box: [4]float64{0, 0, 1, 0.5}}.Request(g, img, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := er.Image.Shape; len(got) != 4 || got[2] != 32 || got[3] != 64 {
		t.Fatalf("image %v, want [1 3 32 64]", got)
	}
	if len(er.Keep) != 8 || er.Keep[0] != 0 || er.Keep[3] != 1 || er.Seed != 4 {
		t.Fatalf("keep %v", er.Keep)
	}
	er, err = EditSpec{Mode: EditRefine, K: 1}.Request(g, img, req)
	if err != nil || er.KeepSteps != 1 {
		t.Fatalf("refine: %v %+v", err, er.KeepSteps)
	}
	er, err = EditSpec{Mode: EditExpand}.Request(g, img, req)
	if err != nil || er.Keep[1] != 1 || er.Keep[0] != 0 {
		t.Fatalf("expand: %v keep %v", err, er.Keep)
	}
	if _, err := (EditSpec{Mode: EditOutpaint, Box: [4]float64{0, 0, 1, 1}}).Request(g, img, req); err == nil {
		t.Fatal("an out-paint box keeping everything was accepted")
	}
	if _, err := (EditSpec{Mode: EditInpaint, Box: [4]float64{0.1, 0.1, 0.2, 0.2}}).Request(g, img, req); err == nil {
		t.Fatal("an in-paint box covering no token was accepted")
	}
	if _, err := (EditSpec{Mode: EditComplete, K: 2}).Request(fakeEditor{"rq"}, img, req); err == nil {
		t.Fatal("completion keeping every row was accepted")
	}
}

// A painted mask: in-painting regenerates the cells mostly painted, out-painting keeps them; nothing
// painted is refused.
func TestEditSpecPainted(t *testing.T) {
	g := fakeEditor{"flexvar"}
	img := image.NewNRGBA(image.Rect(0, 0, 64, 32))
	// 4 x 8 pixels over the 2 x 4 grid: paint the whole left half.
	p := make([]float32, 32)
	for y := range 4 {
		for x := range 4 {
			p[y*8+x] = 1
		}
	}
	er, err := EditSpec{Mode: EditInpaint, Painted: p, MaskH: 4, MaskW: 8}.Request(g, img, gen.Request{Labels: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(er.Keep) != "[0 0 1 1 0 0 1 1]" {
		t.Fatalf("in-paint keep %v", er.Keep)
	}
	er, _ = EditSpec{Mode: EditOutpaint, Painted: p, MaskH: 4, MaskW: 8}.Request(g, img, gen.Request{Labels: []int{0}})
	if fmt.Sprint(er.Keep) != "[1 1 0 0 1 1 0 0]" {
		t.Fatalf("out-paint keep %v", er.Keep)
	}
	s := New(Defaults())
	s.OnLoaded(InfoOf(g, nil), nil)
	s.EditReady = true
	s.Edit = EditSpec{Mode: EditInpaint, Painted: make([]float32, 32), MaskH: 4, MaskW: 8}
	if cmd := s.Apply(ActEdit); cmd.Kind != None || !strings.Contains(s.Message, "paint") {
		t.Fatalf("nothing painted: %v %q", cmd.Kind, s.Message)
	}
}
