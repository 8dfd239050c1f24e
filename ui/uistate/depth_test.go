package uistate

import (
	"image"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
)

// fakeDepths is a generator whose codes have 4 depths (gen.DepthViewer), as RQ's.
type fakeDepths struct{ fakeEditor }

func (fakeDepths) Info() gen.Info {
	return gen.Info{Family: "rq", Classes: 10, StepNoun: "position", Steps: 4, Reroll: true}
}
func (fakeDepths) Depths() int { return 4 }
func (fakeDepths) DecodeDepths(*gen.Result, int) (core.HostTensor, error) {
	return core.HostTensor{}, nil
}

// The depth stepper of a model with code depths: hidden until a run has finished, then at every depth;
// stepping asks the driver for the image of fewer depths, which is shown (and saved) once it comes back;
// a stale result is dropped; a new run hides it and the next image starts at every depth again.
func TestDepthStepper(t *testing.T) {
	s := New(Defaults())
	s.OnLoaded(InfoOf(fakeDepths{}, nil), nil)
	if s.Model.Depths != 4 {
		t.Fatalf("InfoOf: %d depths, want 4", s.Model.Depths)
	}
	hasDepth := func() (Widget, bool) {
		for _, w := range s.Widgets() {
			if w.Action == ActDepthUp {
				return w, true
			}
		}
		return Widget{}, false
	}
	if _, ok := hasDepth(); ok || s.DepthView() {
		t.Fatal("a depth stepper before any image")
	}
	if cmd := s.SetDepth(2); cmd.Kind != None {
		t.Fatalf("SetDepth before any image: %+v", cmd)
	}
	s.Apply(ActGenerate)
	final := image.NewNRGBA(image.Rect(0, 0, 64, 64))
	id := s.Run.ID
	s.OnStep(id, gen.Step{Index: 0, Count: 1}, final)
	if _, ok := hasDepth(); ok {
		t.Fatal("a depth stepper while generating")
	}
	s.OnDone(id, [][]int{{1, 2, 3, 4}}, nil)
	if _, ok := hasDepth(); !ok || s.Depth != 4 || s.DepthLabel() != "4/4" || s.Enabled(ActDepthUp) || !s.Enabled(ActDepthDown) {
		t.Fatalf("after a run: depth %d, label %q, up %v, down %v", s.Depth, s.DepthLabel(), s.Enabled(ActDepthUp), s.Enabled(ActDepthDown))
	}
	cmd := click(t, s, ActDepthDown)
	if cmd.Kind != ShowDepth || cmd.Depth != 3 || s.Depth != 3 {
		t.Fatalf("depth <: %+v, depth %d", cmd, s.Depth)
	}
	// The slider jumps: a decode for 3 still in flight is stale once 1 is picked.
	if cmd := s.SetDepth(-5); cmd.Kind != ShowDepth || cmd.Depth != 1 {
		t.Fatalf("SetDepth(-5): %+v", cmd)
	}
	if s.OnDepth(id, 3, image.NewNRGBA(image.Rect(0, 0, 64, 64)), nil) || s.Shown() != final {
		t.Error("a stale depth's image is shown")
	}
	coarse := image.NewNRGBA(image.Rect(0, 0, 64, 64))
	if !s.OnDepth(id, 1, coarse, nil) || s.Shown() != coarse || s.Latest() != final {
		t.Error("the image of depth 1 is not shown")
	}
	if s.Enabled(ActDepthDown) || !s.Enabled(ActDepthUp) {
		t.Error("at depth 1: < enabled or > disabled")
	}
	if s.SetDepth(1).Kind != None {
		t.Error("picking the depth shown decodes again")
	}
	if w, _ := hasDepth(); w.Rect.Empty() {
		t.Error("no > button")
	}
	if cmd := s.SetDepth(99); cmd.Depth != 4 || !s.OnDepth(id, 4, nil, nil) || s.Shown() != final {
		t.Errorf("back to every depth: %+v, shown %p, want the final image %p", cmd, s.Shown(), final)
	}
	s.SetDepth(2)
	s.OnDepth(id, 2, coarse, nil)
	// A new run: no stepper while it runs, every depth when it is done; a late decode of the old run is
	// dropped.
	s.Apply(ActGenerate)
	if s.Depth != 0 || s.Shown() != nil || s.DepthView() {
		t.Errorf("a new run keeps depth %d", s.Depth)
	}
	s.OnDepth(id, 2, coarse, nil)
	s.OnStep(s.Run.ID, gen.Step{Index: 0, Count: 1}, final)
	s.OnDone(s.Run.ID, [][]int{{1, 2, 3, 4}}, nil)
	if s.Depth != 4 || s.Shown() != final {
		t.Errorf("the next image: depth %d", s.Depth)
	}
	// Families without depths (VAR) have no stepper.
	v := loaded(t)
	v.Apply(ActGenerate)
	finish(v, [][]int{{1}, {2, 3, 4, 5}})
	for _, w := range v.Widgets() {
		if w.Action == ActDepthUp || w.Action == ActDepthDown {
			t.Error("a depth stepper for VAR")
		}
	}
	if v.Depth != 0 || v.SetDepth(1).Kind != None {
		t.Errorf("VAR: depth %d", v.Depth)
	}
}
