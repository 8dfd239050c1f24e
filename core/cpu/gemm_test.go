package cpu

import (
	"fmt"
	"math"
	"testing"
)

// TestGemmNTVariants: every gemmNT variant writes exactly the outputs it owns, c[i*ldc + j] for i < n and
// j < m with ldc > m as Conv2d uses it, leaving the gaps between rows and the guard after the last row
// untouched, and agrees with a float64 product within float32 rounding of a K-long sum.
func TestGemmNTVariants(t *testing.T) {
	const guard = 37
	sentinel := float32(math.Float32frombits(0x7fc00bad)) // a NaN no product yields
	r := newRand(77)
	for _, c := range []struct{ n, m, K, ldc int }{{1, 1, 1, 3}, {6, 16, 256, 16}, {7, 17, 257, 20}, {100, 300, 70, 301}, {13, 5, 513, 9}, {12, 80, 300, 85}} {
		a, b := randn(r, c.n*c.K), randn(r, c.m*c.K)
		want := refLinear(a, b, nil, c.n, c.m, c.K)
		for name, be := range gemmVariants() {
			t.Run(fmt.Sprintf("%s/n%d_m%d_K%d_ldc%d", name, c.n, c.m, c.K, c.ldc), func(t *testing.T) {
				poisonScratch()
				out := make([]float32, (c.n-1)*c.ldc+c.m+guard)
				for i := range out {
					out[i] = sentinel
				}
				be.gemmNT(a, c.n, b, c.m, c.K, out, c.ldc)
				for i := range out {
					row, col := i/c.ldc, i%c.ldc
					if row < c.n && col < c.m {
						w := want[row*c.m+col]
						if d := math.Abs(float64(out[i]) - w); !(d <= 1e-5*math.Sqrt(float64(c.K))*(1+math.Abs(w))) {
							t.Fatalf("c[%d, %d] = %v, want %v", row, col, out[i], w)
						}
					} else if math.Float32bits(out[i]) != math.Float32bits(sentinel) {
						t.Fatalf("wrote %v at offset %d (row %d, column %d), outside the %dx%d output", out[i], i, row, col, c.n, c.m)
					}
				}
			})
		}
	}
}

// poisonScratch puts NaN-filled buffers into gemmPacked's scratch pools, so that a product that read a
// packed value it had not written would produce NaN (a reused buffer holds the previous product's values).
func poisonScratch() {
	for _, s := range []*scratch{&aScratch, &bScratch} {
		for range 4 {
			b := make([]float32, 1<<20)
			for i := range b {
				b[i] = float32(math.NaN())
			}
			s.put(&b)
		}
	}
}

// TestWideKernel: the wide kernels compute, bit for bit, what the narrow kernel of the same family computes
// on each of their two B panels (both accumulate each output in the same order), storing and adding.
func TestWideKernel(t *testing.T) {
	pairs := map[string][2]microKernel{"go": {kernel6x16Go, kernel6x32Go}}
	if fastWideKernel != nil {
		pairs["simd"] = [2]microKernel{fastKernel, fastWideKernel}
	}
	r := newRand(78)
	for name, p := range pairs {
		for _, kc := range []int{1, 7, gemmKC} {
			const ldc = 2*gemmNR + 3
			a, b, c0 := randn(r, gemmMR*kc), randn(r, 2*gemmNR*kc), randn(r, gemmMR*ldc)
			for _, acc := range []bool{false, true} {
				got, want := append([]float32(nil), c0...), append([]float32(nil), c0...)
				p[1](kc, a, b, got, ldc, acc)
				p[0](kc, a, b[:gemmNR*kc], want, ldc, acc)
				p[0](kc, a, b[gemmNR*kc:], want[gemmNR:], ldc, acc)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s kc %d acc %v: c[%d] = %v, narrow kernel %v", name, kc, acc, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkGemmKernel is the micro-kernel alone on one 256-long k block, in cache: the ceiling of the
// packed path on this core (2*6*16*256 FLOP per call, twice that for the wide kernels). The AVX2 kernel's
// ceiling is 2 FMA pipes x 8 lanes x 2 FLOP = 32 FLOP per cycle, AVX-512's 64 where the pipes are 512 bits
// wide (AMD Zen 5).
func BenchmarkGemmKernel(b *testing.B) {
	type kernel struct {
		k     microKernel
		width int // B panels per call
	}
	kernels := map[string]kernel{"go": {kernel6x16Go, 1}, "go-wide": {kernel6x32Go, 2}}
	if fastKernel != nil {
		kernels["simd"] = kernel{fastKernel, 1}
	}
	if fastWideKernel != nil {
		kernels["simd-wide"] = kernel{fastWideKernel, 2}
	}
	r := newRand(6)
	a, bp := randn(r, gemmMR*gemmKC), randn(r, 2*gemmNR*gemmKC)
	c := make([]float32, gemmMR*2*gemmNR)
	for name, k := range kernels {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				k.k(gemmKC, a, bp, c, 2*gemmNR, true)
			}
			b.ReportMetric(float64(2*gemmMR*gemmNR*k.width*gemmKC)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// TestPack16: the SIMD panel packer of bRows writes what interleave writes, for block lengths around
// multiples of 8, row strides longer than the rows, and an offset first row; nothing past the panel.
func TestPack16(t *testing.T) {
	if fastPack16 == nil {
		t.Skip("no SIMD packer on this platform")
	}
	r := newRand(21)
	for _, kc := range []int{1, 7, 8, 9, 16, 63, 256} {
		for _, ld := range []int{kc, kc + 5, 3*kc + 8} {
			const j0, k0 = 3, 2
			f := randn(r, (j0+gemmNR)*ld+k0+kc)
			want := make([]float32, kc*gemmNR)
			interleave(want, gemmNR, gemmNR, kc, func(row int) []float32 { return f[(j0+row)*ld+k0 : (j0+row)*ld+k0+kc] })
			got := make([]float32, kc*gemmNR+8)
			for i := range got {
				got[i] = -7
			}
			bRows{f: f, ld: ld}.packPanel(got[:kc*gemmNR], j0, gemmNR, k0, k0+kc)
			for i, w := range want {
				if got[i] != w {
					t.Fatalf("kc %d ld %d: panel[%d] = %v, want %v", kc, ld, i, got[i], w)
				}
			}
			for i := kc * gemmNR; i < len(got); i++ {
				if got[i] != -7 {
					t.Fatalf("kc %d ld %d: wrote panel[%d] past the panel", kc, ld, i)
				}
			}
		}
	}
}
