package edit

import (
	"fmt"
	"testing"

	"github.com/webvar/webvar/core"
)

func TestBoxMaskRectangle(t *testing.T) {
	// Rows round(0.25*2)=0 .. round(0.75*2)=2 (half to even), columns round(0.25*4)=1 .. 3.
	got := BoxMask(2, 4, [4]float64{0.25, 0.25, 0.75, 0.75}, false)
	if fmt.Sprint(got) != "[0 1 1 0 0 1 1 0]" {
		t.Fatalf("box %v", got)
	}
	if inv := BoxMask(2, 4, [4]float64{0.25, 0.25, 0.75, 0.75}, true); fmt.Sprint(inv) != "[1 0 0 1 1 0 0 1]" {
		t.Fatalf("in-paint box %v", inv)
	}
}

func TestResizeBilinear(t *testing.T) {
	// align_corners=False: out 4 from in 2 samples at 0 (clamped), 0.25, 0.75 and 1 (clamped).
	if got := ResizeBilinear([]float32{0, 1}, 1, 2, 1, 4); fmt.Sprint(got) != "[0 0.25 0.75 1]" {
		t.Fatalf("1x2 -> 1x4: %v", got)
	}
	c := ResizeBilinear([]float32{0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, 2, 3, 5, 7)
	for _, v := range c {
		if v != 0.5 {
			t.Fatalf("constant plane resized to %v", c)
		}
	}
}

func TestKeepMasksAndApply(t *testing.T) {
	mask := BoxMask(2, 4, [4]float64{0, 0, 1, 0.5}, false) // keep the left half
	keep, err := KeepMasks(mask, 2, 4, [][2]int{{1, 1}, {1, 3}, {2, 4}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keep) != "[[true] [true true true] [true true false false true true false false]]" {
		t.Fatalf("keep %v", keep)
	}
	if _, err := KeepMasks(mask[:7], 2, 4, nil); err == nil {
		t.Fatal("a mask of the wrong size was accepted")
	}
	e := &Edit{Tokens: [][]int{{9}, {7, 7, 7}, {1, 2, 3, 4, 5, 6, 7, 8}}, Keep: keep}
	if err := e.Check([]int{1, 3, 8}); err != nil {
		t.Fatal(err)
	}
	if err := e.Check([]int{1, 3}); err == nil {
		t.Fatal("an edit of the wrong step count was accepted")
	}
	ids := []int{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // two images
	e.Apply(2, ids)
	if fmt.Sprint(ids) != "[1 2 0 0 5 6 0 0 1 2 0 0 5 6 0 0]" {
		t.Fatalf("applied %v", ids)
	}
}

// Strip puts input, tinted input and output side by side, enlarged; regenerated cells are tinted, kept
// ones are the input's pixels.
func TestStrip(t *testing.T) {
	in := core.HostTensor{Shape: core.Shape{1, 3, 2, 2}, Data: make([]float32, 12)} // mid-grey 0 -> 0.5
	out := core.HostTensor{Shape: core.Shape{1, 3, 2, 2}, Data: []float32{1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}}
	s, err := Strip(in, []float32{1, 0}, 1, 2, out, 2)
	if err != nil {
		t.Fatal(err)
	}
	if b := s.Bounds(); b.Dx() != 3*4+2*8 || b.Dy() != 4 {
		t.Fatalf("strip %v", b)
	}
	px := func(x, y int) [3]uint8 { o := s.PixOffset(x, y); return [3]uint8{s.Pix[o], s.Pix[o+1], s.Pix[o+2]} }
	if got := px(4+8, 0); got != [3]uint8{128, 128, 128} {
		t.Errorf("kept cell %v, want the input's grey", got)
	}
	if got := px(4+8+2, 0); got[1] >= got[0] {
		t.Errorf("regenerated cell %v, want a magenta tint", got)
	}
	if got := px(2*(4+8), 0); got != [3]uint8{255, 0, 0} {
		t.Errorf("output pixel %v, want red", got)
	}
	if _, err := Strip(in, []float32{1}, 1, 2, out, 2); err == nil {
		t.Error("a mask of the wrong size was accepted")
	}
}
