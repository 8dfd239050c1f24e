// Package testutil holds comparison helpers shared by the tests: they report which tensor differs, where and by
// how much (llm.c style "TENSOR OK, maxdiff ...").
package testutil

import (
	"fmt"
	"math"
	"testing"
)

// Diff summarises the difference between two equally long float slices.
type Diff struct {
	MaxAbs    float64 // largest |got-want|
	At        int     // flat index of MaxAbs
	RefMax    float64 // largest |want|
	NonFinite int     // index of the first NaN/Inf in got, or -1
}

// Rel is MaxAbs relative to the reference's largest magnitude (1 when the reference is all zeros).
func (d Diff) Rel() float64 {
	if d.RefMax == 0 {
		return d.MaxAbs
	}
	return d.MaxAbs / d.RefMax
}

// Compare computes the Diff of got against want. Lengths must match.
func Compare(got, want []float32) Diff {
	d := Diff{NonFinite: -1}
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if d.NonFinite < 0 && (math.IsNaN(g) || math.IsInf(g, 0)) {
			d.NonFinite = i
		}
		if a := math.Abs(w); a > d.RefMax {
			d.RefMax = a
		}
		if e := math.Abs(g - w); e > d.MaxAbs {
			d.MaxAbs, d.At = e, i
		}
	}
	return d
}

// AbsClose fails t unless every element of got is within tol of want (absolute error).
func AbsClose(t testing.TB, name string, got, want []float32, tol float64) {
	t.Helper()
	check(t, name, got, want, tol, false)
}

// RelClose fails t unless max|got-want| <= tol * max|want| (error relative to the tensor's largest value,
// the tolerance convention of golden.md).
func RelClose(t testing.TB, name string, got, want []float32, tol float64) {
	t.Helper()
	check(t, name, got, want, tol, true)
}

func check(t testing.TB, name string, got, want []float32, tol float64, rel bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("TENSOR %s: length %d, want %d", name, len(got), len(want))
		return
	}
	d := Compare(got, want)
	if d.NonFinite >= 0 {
		t.Errorf("TENSOR %s: non-finite value %v at %d", name, got[d.NonFinite], d.NonFinite)
		return
	}
	e, kind := d.MaxAbs, "abs"
	if rel {
		e, kind = d.Rel(), "rel"
	}
	msg := fmt.Sprintf("TENSOR %s: max %s err %.3g (abs %.3g at %d: got %v want %v; ref max %.3g; tol %.1g)",
		name, kind, e, d.MaxAbs, d.At, got[d.At], want[d.At], d.RefMax, tol)
	if !(e <= tol) {
		t.Error(msg + " FAIL")
		return
	}
	t.Log(msg + " OK")
}
