// Package backendtest is the cross-backend op test: one table of cases, each an op with seeded random
// inputs, run on the CPU reference backend and on the backend under test; outputs are compared with a
// per-op tolerance on the normalised error max|got-want| / max(1, max|want|), taken over the positions
// where both are finite; at every other position both must be NaN or both the same infinity (compare).
// Backends with guard regions (webgpu) additionally verify that no kernel wrote past its output.
//
// A backend's test calls Run(t, backend); shapes deliberately avoid multiples of tile sizes.
package backendtest

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
)

// Case is one row of the table.
type Case struct {
	Name string
	// Inputs builds the op's inputs from a seeded generator.
	Inputs func(r *rand.Rand) []core.HostTensor
	// Op runs the op on uploaded inputs. It returns either a tensor (compared) or, for ops that return
	// host ints (NearestCode), ints through Ints.
	Op   func(o *core.Ops, in []*core.Tensor) *core.Tensor
	Ints func(b core.Backend, in []*core.Tensor) ([]int, error)
	// Upload, when set, makes the backend tensors from the inputs instead of b.Upload of each (for tensors
	// Upload cannot make, such as quantized weights). Both backends get the same host inputs.
	Upload func(b core.Backend, ins []core.HostTensor) ([]*core.Tensor, error)
	// Tol is the allowed normalised error.
	Tol float64
}

// Randn returns a tensor of N(mean, std) values.
func Randn(r *rand.Rand, mean, std float64, shape ...int) core.HostTensor {
	s := core.Shape(shape)
	d := make([]float32, s.Numel())
	for i := range d {
		d[i] = float32(mean + std*r.NormFloat64())
	}
	return core.HostTensor{Shape: s, Data: d}
}

// Result of one case, for reporting.
type Result struct {
	Name   string
	MaxAbs float64 // max |got-want| over the positions where both are finite
	At     int     // where MaxAbs is (0 when every position agrees)
	Norm   float64 // MaxAbs / max(1, max |want| over the same positions)
}

// Run runs every case of Cases on b against the CPU reference and reports the errors.
func Run(t *testing.T, b core.Backend) []Result {
	return RunCases(t, b, Cases())
}

// RunCases runs the given cases.
func RunCases(t *testing.T, b core.Backend, cases []Case) []Result {
	ref := cpu.NewReference(0) // the plain-Go specification of every op
	var out []Result
	for i, c := range cases {
		c := c
		t.Run(c.Name, func(t *testing.T) {
			r := rand.New(rand.NewSource(int64(1000 + i)))
			ins := c.Inputs(r)
			if c.Ints != nil {
				want, err := c.Ints(ref, upload(t, ref, c, ins))
				if err != nil {
					t.Fatalf("cpu: %v", err)
				}
				got, err := c.Ints(b, upload(t, b, c, ins))
				if err != nil {
					t.Fatalf("%s: %v", b.Name(), err)
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("ids differ:\n got  %v\n want %v", got, want)
				}
				t.Logf("OP %s: %d ids identical", c.Name, len(want))
				return
			}
			want := runOp(t, ref, c, ins)
			got := runOp(t, b, c, ins)
			if !got.Shape.Equal(want.Shape) {
				t.Fatalf("shape %v, want %v", got.Shape, want.Shape)
			}
			res, err := compare(got.Data, want.Data, c.Tol)
			if err != nil {
				t.Fatalf("OP %s %v on %s: %v FAIL", c.Name, want.Shape, b.Name(), err)
			}
			t.Logf("OP %s %v: max abs err %.3g at %d, normalised %.3g (tol %.1g)", c.Name, want.Shape, res.MaxAbs, res.At, res.Norm, c.Tol)
			res.Name = c.Name
			out = append(out, res)
		})
	}
	return out
}

func upload(t *testing.T, b core.Backend, c Case, ins []core.HostTensor) []*core.Tensor {
	t.Helper()
	if c.Upload != nil {
		ts, err := c.Upload(b, ins)
		if err != nil {
			t.Fatalf("%s upload: %v", b.Name(), err)
		}
		return ts
	}
	var ts []*core.Tensor
	for _, h := range ins {
		x, err := b.Upload(h)
		if err != nil {
			t.Fatalf("%s upload: %v", b.Name(), err)
		}
		ts = append(ts, x)
	}
	return ts
}

func runOp(t *testing.T, b core.Backend, c Case, ins []core.HostTensor) core.HostTensor {
	t.Helper()
	o := core.NewOps(b)
	y := c.Op(o, upload(t, b, c, ins))
	h := o.Download(y)
	if err := o.Err(); err != nil {
		t.Fatalf("%s: %v", b.Name(), err)
	}
	return h
}

// compare checks got against want (the reference) with tolerance tol on the normalised error and returns
// the measured error (Name unset), or an error naming the first position that fails, with both values.
//
// Non-finite values must agree exactly: at a position where either side is NaN or ±Inf, both must be NaN
// or both the same infinity (a reference NaN is what a backend must reproduce, e.g. SiLU(-Inf), not a
// position where anything goes). The error is measured over the positions where both are finite only:
// one NaN or Inf there would make the maximum NaN (math.Max propagates it) or Inf/Inf = NaN, and NaN >
// tol is false, so the whole case would pass whatever the backend returned. The denominator is at least
// 1, so a reference that is all zeros (or all non-finite) still bounds the backend's absolute error.
// The test is !(norm <= tol), not norm > tol, so that a NaN norm could only ever fail.
func compare(got, want []float32, tol float64) (Result, error) {
	if len(got) != len(want) {
		return Result{}, fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	var res Result
	refMax := 0.0
	for j := range want {
		g, w := float64(got[j]), float64(want[j])
		gFinite, wFinite := !math.IsNaN(g) && !math.IsInf(g, 0), !math.IsNaN(w) && !math.IsInf(w, 0)
		if !gFinite || !wFinite {
			if !(math.IsNaN(g) && math.IsNaN(w)) && g != w { // g == w: the same infinity
				return res, fmt.Errorf("non-finite mismatch at %d: got %v, want %v", j, g, w)
			}
			continue
		}
		refMax = math.Max(refMax, math.Abs(w))
		if d := math.Abs(g - w); d > res.MaxAbs {
			res.MaxAbs, res.At = d, j
		}
	}
	res.Norm = res.MaxAbs / math.Max(1, refMax)
	if !(res.Norm <= tol) {
		return res, fmt.Errorf("max abs err %.3g at %d (got %v, want %v), normalised %.3g > tol %.1g",
			res.MaxAbs, res.At, got[res.At], want[res.At], res.Norm, tol)
	}
	return res, nil
}
