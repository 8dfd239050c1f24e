package cpu

import (
	"fmt"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
)

// refLinear is the naive triple loop in float64.
func refLinear(x, w, b []float32, N, M, K int) []float64 {
	y := make([]float64, N*M)
	for n := range N {
		for m := range M {
			var s float64
			for k := range K {
				s += float64(x[n*K+k]) * float64(w[m*K+k])
			}
			if b != nil {
				s += float64(b[m])
			}
			y[n*M+m] = s
		}
	}
	return y
}

func TestLinearProperty(t *testing.T) {
	be := testBackend()
	r := newRand(4)
	// Odd sizes exercise every remainder path of the 2x3 micro-kernel and of the 64x48 tiles.
	for _, c := range []struct{ N, M, K int }{{1, 1, 1}, {7, 13, 17}, {65, 129, 33}, {2, 50, 3}, {130, 97, 64}} {
		for _, bias := range []bool{false, true} {
			name := fmt.Sprintf("N%d_M%d_K%d_bias%v", c.N, c.M, c.K, bias)
			t.Run(name, func(t *testing.T) {
				x, xv := randTensor(t, be, r, c.N, c.K)
				w, wv := randTensor(t, be, r, c.M, c.K)
				var b *core.Tensor
				var bv []float32
				if bias {
					b, bv = randTensor(t, be, r, c.M)
				}
				got := download(t, be, must(t)(be.Linear(x, w, b)), core.Shape{c.N, c.M})
				testutil.AbsClose(t, "linear "+name, got, to32(refLinear(xv, wv, bv, c.N, c.M, c.K)), 1e-4)
			})
		}
	}
	t.Run("leading dims", func(t *testing.T) {
		x, xv := randTensor(t, be, r, 2, 3, 5, 8)
		w, wv := randTensor(t, be, r, 4, 8)
		got := download(t, be, must(t)(be.Linear(x, w, nil)), core.Shape{2, 3, 5, 4})
		testutil.AbsClose(t, "linear [2,3,5,8]", got, to32(refLinear(xv, wv, nil, 30, 4, 8)), 1e-5)
	})
}

// BenchmarkLinear runs the largest Linear of VAR-d16 (C = 1024, FFN 4096) over all 680 tokens.
func BenchmarkLinear(b *testing.B) {
	const N, M, K = 680, 4096, 1024
	be := New(0)
	r := newRand(5)
	x, _ := randTensor(b, be, r, N, K)
	w, _ := randTensor(b, be, r, M, K)
	bias, _ := randTensor(b, be, r, M)
	for b.Loop() {
		if _, err := be.Linear(x, w, bias); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*N*M*K*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
