package core

import (
	"errors"
	"testing"
)

// CheckAllUsed names the first unread tensor in name order and counts them all; once every tensor is
// read or marked, it reports nothing.
func TestCheckAllUsed(t *testing.T) {
	src := MapSource{"b": {Shape: Shape{1}, Data: []float32{0}}, "a": {Shape: Shape{1}, Data: []float32{0}},
		"c": {Shape: Shape{1}, Data: []float32{0}}}
	w := NewWeights(src, nil)
	w.MarkUsed("c")
	err := w.CheckAllUsed("a test checkpoint")
	var we *WeightError
	if !errors.As(err, &we) || we.Tensor != "a" {
		t.Fatalf("got %v: want a *WeightError for tensor a", err)
	}
	if want := "weight a: unexpected in a test checkpoint (2 unknown tensors)"; err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
	w.MarkUsed("a", "b")
	if err := w.CheckAllUsed("a test checkpoint"); err != nil {
		t.Fatalf("all used: got %v", err)
	}
}
