package varmodel

import (
	"fmt"
	"github.com/webvar/webvar/core/edit"
	"testing"
)

// get_edit_mask rounds with Python's round (half to even): 0.125*4 = 0.5 -> 0 and 0.375*4 = 1.5 -> 2.
func TestBoxMaskRoundsHalfToEven(t *testing.T) {
	got := BoxMask(4, [4]float64{0.125, 0.125, 0.375, 0.625}, false)
	// rows 0..2 (round(0.5) = 0, round(1.5) = 2), columns 0..2 (round(2.5) = 2)
	want := []float32{1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("box mask %v, want %v", got, want)
	}
	inv := BoxMask(4, [4]float64{0.125, 0.125, 0.375, 0.625}, true)
	for i := range inv {
		if inv[i] != 1-want[i] {
			t.Fatalf("in-painting mask %v is not the inverse", inv)
		}
	}
}

func TestKeepMasks(t *testing.T) {
	mask := BoxMask(4, [4]float64{0, 0, 1, 1}, true) // regenerate everything
	keep, err := KeepMasks(mask, 4, []int{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	// Scales of at most 3 tokens are always kept; larger ones follow the mask.
	if fmt.Sprint(keep[0]) != "[true]" || fmt.Sprint(keep[2]) != "[false false false false false false false false false]" {
		t.Fatalf("keep masks %v", keep)
	}
	if _, err := KeepMasks(mask[:15], 4, []int{1, 2}); err == nil {
		t.Fatal("a mask of the wrong size was accepted")
	}
	// Resizing to the same size is the identity.
	if got := edit.ResizeBilinear(mask, 4, 4, 4, 4); fmt.Sprint(got) != fmt.Sprint(mask) {
		t.Fatalf("identity resize %v", got)
	}
}
