package core_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
)

func TestOpsKeepsFirstErrorWithScope(t *testing.T) {
	o := core.NewOps(cpu.New(1))
	x := o.Upload(core.HostTensor{Shape: core.Shape{2, 3}, Data: make([]float32, 6)})
	w := o.Upload(core.HostTensor{Shape: core.Shape{4, 5}, Data: make([]float32, 20)})
	o.SetScope("blocks.3")
	if y := o.Linear(x, w, nil); y != nil {
		t.Fatal("mismatched linear returned a tensor")
	}
	first := o.Err()
	if first == nil || !strings.HasPrefix(first.Error(), "blocks.3: ") {
		t.Fatalf("error %v, want it scoped to blocks.3", first)
	}
	if strings.Count(first.Error(), "linear") != 1 {
		t.Errorf("op named more than once: %v", first)
	}
	var se *core.ShapeError
	if !errors.As(first, &se) {
		t.Errorf("error %v does not unwrap to a ShapeError", first)
	}
	// Later ops are no-ops and keep the first error.
	if y := o.SiLU(x); y != nil || o.Err() != first {
		t.Fatalf("op after an error ran or replaced the error: %v", o.Err())
	}
}

func TestReshapeChecksElementCount(t *testing.T) {
	x := core.NewTensor(core.Shape{2, 3}, nil)
	if _, err := core.Reshape(x, 3, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Reshape(x, 4, 2); err == nil {
		t.Fatal("reshape to a different element count accepted")
	}
}

func TestToImageRoundsAndClamps(t *testing.T) {
	h := core.HostTensor{Shape: core.Shape{1, 3, 1, 2}, Data: []float32{0, 1.2, 0.5, -0.1, 1, 0.2}}
	img, err := core.ToImage(h, 0)
	if err != nil {
		t.Fatal(err)
	}
	p0, p1 := img.NRGBAAt(0, 0), img.NRGBAAt(1, 0)
	if p0.R != 0 || p0.G != 128 || p0.B != 255 || p1.R != 255 || p1.G != 0 || p1.B != 51 {
		t.Fatalf("pixels %v %v", p0, p1)
	}
	if _, err := core.ToImage(h, 1); err == nil {
		t.Fatal("image index out of range accepted")
	}
}
