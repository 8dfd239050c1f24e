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
	for name, be := range gemmVariants() {
		t.Run(name, func(t *testing.T) { testLinearProperty(t, be) })
	}
}

func testLinearProperty(t *testing.T, be *Backend) {
	r := newRand(4)
	// Odd sizes exercise every remainder path of the reference's 2x3 micro-kernel and 64x48 tiles, and of
	// the packed path's 6x16 micro-tiles, 96x128 tasks and 256-long k blocks.
	cases := []struct{ N, M, K int }{{1, 1, 1}, {7, 13, 17}, {65, 129, 33}, {2, 50, 3}, {130, 97, 64},
		{97, 129, 257}, {193, 16, 600}, {6, 272, 512}}
	for _, c := range cases {
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

// BenchmarkLinear runs the largest Linear of VAR-d16 (C = 1024, FFN 4096) over all 680 tokens, on the
// fast path (New) and the reference code.
func BenchmarkLinear(b *testing.B) {
	b.Run("fast", func(b *testing.B) { benchmarkLinear(b, New(0)) })
	b.Run("reference", func(b *testing.B) { benchmarkLinear(b, NewReference(0)) })
}

// BenchmarkLinearQuant is BenchmarkLinear's fc1 with an int8 weight at 2 rows (the first scale with CFG,
// where dequantizing the weight is most of the work) and at 512 rows (the last scale), on the fast path.
func BenchmarkLinearQuant(b *testing.B) {
	for _, N := range []int{2, 512} {
		b.Run(fmt.Sprintf("N%d", N), func(b *testing.B) {
			const M, K = 4096, 1024
			be := New(0)
			r := newRand(5)
			x, _ := randTensor(b, be, r, N, K)
			q, err := core.Quantize(core.HostTensor{Shape: core.Shape{M, K}, Data: randn(r, M*K)}, core.QuantInt8)
			if err != nil {
				b.Fatal(err)
			}
			w, err := be.UploadQuant(q)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := be.Linear(x, w, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*float64(N*M*K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(float64(M*K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gweights/s")
		})
	}
}

func benchmarkLinear(b *testing.B, be *Backend) {
	const N, M, K = 680, 4096, 1024
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

// BenchmarkLinearDiffusionMLP runs the Linear products of one pass of MAR-B's diffusion MLP (6 blocks of
// adaLN [3072, 1024], fc1 and fc2 [1024, 1024], then the final adaLN [2048, 1024]; int4 weights, 31.5M
// of them: more than the caches hold, as in a real run) at the row counts of MAR's iterations (2 to 50
// tokens, both CFG halves), with the weights prepacked (their codes in panel order, qpack.go) and
// dequantized from their rows on every product.
func BenchmarkLinearDiffusionMLP(b *testing.B) {
	const W = 1024
	r := newRand(9)
	var hs []core.HostTensor
	for range 6 {
		for _, m := range []int{3 * W, W, W} {
			hs = append(hs, core.HostTensor{Shape: core.Shape{m, W}, Data: randn(r, m*W)})
		}
	}
	hs = append(hs, core.HostTensor{Shape: core.Shape{2 * W, W}, Data: randn(r, 2*W*W)})
	for _, N := range []int{4, 16, 32, 64} {
		for _, mode := range []string{"prepacked", "dequant"} {
			b.Run(fmt.Sprintf("N%d/%s", N, mode), func(b *testing.B) {
				be := New(0)
				if mode == "dequant" {
					be.packs = nil
				}
				var ws []*core.Tensor
				flops := 0.0
				for _, h := range hs {
					q, err := core.Quantize(h, core.QuantInt4)
					if err != nil {
						b.Fatal(err)
					}
					w, err := be.UploadQuant(q)
					if err != nil {
						b.Fatal(err)
					}
					ws = append(ws, w)
					flops += 2 * float64(N*h.Shape.Numel())
				}
				x, _ := randTensor(b, be, r, N, W)
				pass := func() {
					for _, w := range ws {
						y, err := be.Linear(x, w, nil)
						if err != nil {
							b.Fatal(err)
						}
						be.Free(y)
					}
				}
				pass()
				pass() // the second use prepacks
				b.ResetTimer()
				for b.Loop() {
					pass()
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
