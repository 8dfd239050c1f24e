package backendtest

import (
	"math"
	"strings"
	"testing"
)

// TestCompare: the table's comparison itself. Non-finite values pass only where both sides agree on them
// exactly, and one of them in the reference must not blind the error over the rest (math.Max(x, NaN) is
// NaN, and NaN > tol is false: a backend returning zeros would have passed every such case).
func TestCompare(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, c := range []struct {
		name      string
		got, want []float32
		tol       float64
		fail      string // a part of the error message; "" where the comparison must pass
	}{
		{"nan-want-finite-got", []float32{1, 2, 3}, []float32{1, nan, 3}, 1e-4, "at 1: got 2, want NaN"},
		{"nan-got-finite-want", []float32{1, nan, 3}, []float32{1, 2, 3}, 1e-4, "at 1: got NaN, want 2"},
		{"zeros-vs-want-with-one-nan", []float32{0, 0, 0, 0}, []float32{5, -3, nan, 7}, 1e-4, "at 2: got 0, want NaN"},
		{"zeros-after-the-nan", []float32{0, nan, 0, 0}, []float32{5, nan, -3, 7}, 1e-4, "max abs err 7 at 3"},
		{"inf-want-finite-got", []float32{1, 0, 3}, []float32{1, inf, 3}, 1e-4, "at 1: got 0, want +Inf"},
		{"zeros-after-the-inf", []float32{0, inf, 0}, []float32{2, inf, -1}, 1e-4, "max abs err 2 at 0"},
		{"plus-inf-vs-minus-inf", []float32{1, inf, 3}, []float32{1, -inf, 3}, 1e-4, "at 1: got +Inf, want -Inf"},
		{"nan-vs-inf", []float32{nan}, []float32{inf}, 1e-4, "at 0: got NaN, want +Inf"},
		// A reference whose finite part is zero: the denominator is 1, not 0 (no 0/0 = NaN), so the
		// absolute error of garbage still counts.
		{"garbage-vs-zeros-and-nan", []float32{0.5, nan, 0}, []float32{0, nan, 0}, 1e-4, "max abs err 0.5 at 0"},
		{"garbage-vs-zeros", []float32{0, 0, 1e-3}, []float32{0, 0, 0}, 1e-4, "normalised 0.001"},
		{"large-error", []float32{1, 2, 3.5}, []float32{1, 2, 3}, 1e-4, "max abs err 0.5 at 2"},
		{"length", []float32{1, 2}, []float32{1, 2, 3}, 1e-4, "2 values, want 3"},

		{"both-nan-same-index", []float32{1, nan, 3}, []float32{1, nan, 3}, 0, ""},
		{"both-same-inf", []float32{-inf, 0.5, inf}, []float32{-inf, 0.5, inf}, 0, ""},
		{"small-error", []float32{100, -50, 3.0001}, []float32{100, -50, 3}, 1e-5, ""},
		{"small-error-beside-nan", []float32{100, nan, 3.0001}, []float32{100, nan, 3}, 1e-5, ""},
		{"exact-zero-tol", []float32{0, 1, -2}, []float32{0, 1, -2}, 0, ""},
		{"empty", nil, nil, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := compare(c.got, c.want, c.tol)
			switch {
			case c.fail == "" && err != nil:
				t.Fatalf("compare(%v, %v, %g) failed: %v; want a pass", c.got, c.want, c.tol, err)
			case c.fail != "" && err == nil:
				t.Fatalf("compare(%v, %v, %g) passed (%+v); want a failure with %q", c.got, c.want, c.tol, res, c.fail)
			case c.fail != "" && !strings.Contains(err.Error(), c.fail):
				t.Fatalf("compare(%v, %v, %g): error %q, want it to contain %q", c.got, c.want, c.tol, err, c.fail)
			}
			if math.IsNaN(res.Norm) || math.IsInf(res.Norm, 0) {
				t.Fatalf("normalised error %v: it must be computed over finite positions only", res.Norm)
			}
		})
	}
}

// TestCompareNormalisation: the error is relative to the largest finite reference value (at least 1),
// and its position is reported.
func TestCompareNormalisation(t *testing.T) {
	nan := float32(math.NaN())
	res, err := compare([]float32{1000, 2, nan, 5.5}, []float32{1000, 2, nan, 5}, 1e-3)
	if err != nil {
		t.Fatal(err)
	}
	if res.MaxAbs != 0.5 || res.At != 3 || res.Norm != 0.5/1000 {
		t.Fatalf("got %+v; want max abs 0.5 at 3, normalised 0.5/1000", res)
	}
	if _, err := compare([]float32{1000, 2, nan, 5.5}, []float32{1000, 2, nan, 5}, 1e-4); err == nil {
		t.Fatal("normalised error 5e-4 passed a tolerance of 1e-4")
	}
}
