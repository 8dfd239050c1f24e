// Package backendtest is the cross-backend op test: one table of cases, each an op with seeded random
// inputs, run on the CPU reference backend and on the backend under test; outputs are compared with a
// per-op tolerance on the normalised error max|got-want| / max(1, max|want|), and checked for NaN/Inf.
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
	MaxAbs float64
	Norm   float64
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
			maxAbs, refMax := 0.0, 0.0
			at := 0
			for j := range want.Data {
				g, w := float64(got.Data[j]), float64(want.Data[j])
				if math.IsNaN(g) || math.IsInf(g, 0) {
					if !(math.IsNaN(w) || math.IsInf(w, 0)) {
						t.Fatalf("non-finite %v at %d (want %v)", g, j, w)
					}
					continue
				}
				refMax = math.Max(refMax, math.Abs(w))
				if d := math.Abs(g - w); d > maxAbs {
					maxAbs, at = d, j
				}
			}
			norm := maxAbs / math.Max(1, refMax)
			msg := fmt.Sprintf("OP %s %v: max abs err %.3g at %d, normalised %.3g (tol %.1g)", c.Name, want.Shape, maxAbs, at, norm, c.Tol)
			if norm > c.Tol {
				t.Fatal(msg + " FAIL")
			}
			t.Log(msg)
			out = append(out, Result{c.Name, maxAbs, norm})
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
