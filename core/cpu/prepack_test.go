package cpu

import (
	"math"
	"testing"

	"github.com/webvar/webvar/core"
)

// TestPrepackedLinear: Linear with a prepacked weight (few rows of x) gives exactly what the same packed
// product gives packing the weight on every call, for f32, int8 and int4 weights of shapes with edge
// panels and several k blocks, on first and later use; Free forgets the weight; the budget is kept.
func TestPrepackedLinear(t *testing.T) {
	if fastKernel == nil {
		t.Skip("no SIMD micro-kernel: the packed path (and its cache) is not used on this platform")
	}
	r := newRand(41)
	cached := New(3)
	// Without the matrix-vector path (gemv.go), which New takes for 1 and 2 rows, so that they pack too.
	cached.gemvPath = nil
	plain := &Backend{threads: 3, kernel: fastKernel, wide: fastWideKernel, fastMath: true} // no cache
	for _, c := range []struct{ N, M, K int }{{1, 1, 1}, {2, 37, 70}, {7, 130, 600}, {192, 45, 257}, {33, 1024, 300}} {
		for _, scheme := range []string{"f32", "int8", "int4"} {
			wv := randn(r, c.M*c.K)
			var w *core.Tensor
			switch scheme {
			case "f32":
				w = upload(t, cached, core.Shape{c.M, c.K}, wv)
			case "int8":
				w, _ = quantize(t, cached, core.QuantInt8, c.M, c.K, wv)
			default:
				w, _ = quantize(t, cached, core.QuantInt4, c.M, c.K, wv)
			}
			x := upload(t, cached, core.Shape{c.N, c.K}, randn(r, c.N*c.K))
			want := must(t)(plain.Linear(x, w, nil)).Storage().([]float32)
			for use := range 2 {
				got := must(t)(cached.Linear(x, w, nil)).Storage().([]float32)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s %+v, use %d: y[%d] = %v, want %v", scheme, c, use, i, got[i], want[i])
					}
				}
			}
			if cached.PrepackedBytes() == 0 {
				t.Fatalf("%s %+v: nothing prepacked", scheme, c)
			}
			before := cached.PrepackedBytes()
			cached.Free(w)
			if cached.PrepackedBytes() >= before {
				t.Fatalf("Free kept the prepacked weight (%d bytes, %d before)", cached.PrepackedBytes(), before)
			}
		}
	}
	// Many rows: no prepacking. A weight over the budget: not prepacked, same results.
	x := upload(t, cached, core.Shape{prepackRows + 1, 8}, randn(r, (prepackRows+1)*8))
	w := upload(t, cached, core.Shape{16, 8}, randn(r, 16*8))
	must(t)(cached.Linear(x, w, nil))
	if n := cached.PrepackedBytes(); n != 0 {
		t.Fatalf("%d bytes prepacked for a product of %d rows", n, prepackRows+1)
	}
	small := New(3)
	small.gemvPath = nil
	small.packs.budget = 100
	x = upload(t, small, core.Shape{2, 8}, randn(r, 16))
	for range 2 {
		must(t)(small.Linear(x, w, nil))
	}
	if n := small.PrepackedBytes(); n != 0 {
		t.Fatalf("%d bytes prepacked over a 100-byte budget", n)
	}

	// A budget for one weight: the one used twice gets it, not the one used first (once).
	one := New(3)
	one.gemvPath = nil
	one.packs.budget = 16 * 8 * 4
	once := upload(t, one, core.Shape{16, 8}, randn(r, 16*8))
	twice := upload(t, one, core.Shape{16, 8}, randn(r, 16*8))
	x = upload(t, one, core.Shape{3, 8}, randn(r, 24))
	must(t)(one.Linear(x, once, nil))
	if n := one.PrepackedBytes(); n != 0 {
		t.Fatalf("%d bytes prepacked after a weight's first use", n)
	}
	must(t)(one.Linear(x, twice, nil))
	must(t)(one.Linear(x, twice, nil))
	if one.packs.byW[twice] == nil || one.packs.byW[once] != nil {
		t.Fatalf("a budget for one weight: the weight used twice is not the one prepacked")
	}
}
