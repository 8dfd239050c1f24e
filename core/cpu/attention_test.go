package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
)

// refAttention is a naive float64 attention over [B, L, H*d] / [B, S, H*d] tensors.
func refAttention(q, k, v, mask []float32, B, L, S, H, d int, scale float64) []float64 {
	C := H * d
	out := make([]float64, B*L*C)
	for b := range B {
		for h := range H {
			for l := range L {
				scores := make([]float64, S)
				maxScore := math.Inf(-1)
				for s := range S {
					var dot float64
					for j := range d {
						dot += float64(q[(b*L+l)*C+h*d+j]) * float64(k[(b*S+s)*C+h*d+j])
					}
					scores[s] = dot * scale
					if mask != nil {
						scores[s] += float64(mask[l*S+s])
					}
					maxScore = math.Max(maxScore, scores[s])
				}
				var sum float64
				for s := range scores {
					scores[s] = math.Exp(scores[s] - maxScore)
					sum += scores[s]
				}
				for j := range d {
					var acc float64
					for s := range S {
						acc += scores[s] / sum * float64(v[(b*S+s)*C+h*d+j])
					}
					out[(b*L+l)*C+h*d+j] = acc
				}
			}
		}
	}
	return out
}

func TestAttentionProperty(t *testing.T) {
	// The second shape has more query rows than one work item of the packed path and more keys than one
	// of its k blocks.
	for _, sh := range []struct{ B, L, S, H, d int }{{2, 7, 11, 3, 5}, {1, 70, 300, 2, 20}} {
		for name, be := range gemmVariants() {
			t.Run(fmt.Sprintf("%s/B%d_L%d_S%d_H%d_d%d", name, sh.B, sh.L, sh.S, sh.H, sh.d), func(t *testing.T) {
				testAttentionProperty(t, be, sh.B, sh.L, sh.S, sh.H, sh.d)
			})
		}
	}
}

func testAttentionProperty(t *testing.T, be *Backend, B, L, S, H, d int) {
	r := newRand(8)
	const scale = 0.37
	q, qv := randTensor(t, be, r, B, L, H*d)
	k, kv := randTensor(t, be, r, B, S, H*d)
	v, vv := randTensor(t, be, r, B, S, H*d)

	t.Run("no mask", func(t *testing.T) {
		got := download(t, be, must(t)(be.Attention(q, k, v, H, scale, nil)), core.Shape{B, L, H * d})
		testutil.AbsClose(t, "attention", got, to32(refAttention(qv, kv, vv, nil, B, L, S, H, d, scale)), 1e-5)
	})
	t.Run("mask", func(t *testing.T) {
		// Random additive values plus -Inf entries, never a whole row.
		mask := randn(r, L*S)
		for l := range L {
			for s := range S {
				if (l+2*s)%3 == 0 && s != l {
					mask[l*S+s] = float32(math.Inf(-1))
				}
			}
		}
		m := upload(t, be, core.Shape{L, S}, mask)
		got := download(t, be, must(t)(be.Attention(q, k, v, H, scale, m)), core.Shape{B, L, H * d})
		testutil.AbsClose(t, "attention masked", got, to32(refAttention(qv, kv, vv, mask, B, L, S, H, d, scale)), 1e-5)
	})
	t.Run("fully masked row gives zeros", func(t *testing.T) {
		mask := make([]float32, L*S)
		for s := range S {
			mask[2*S+s] = float32(math.Inf(-1)) // query row 2
		}
		got := download(t, be, must(t)(be.Attention(q, k, v, H, scale, upload(t, be, core.Shape{L, S}, mask))), core.Shape{B, L, H * d})
		for b := range B {
			for c := range H * d {
				if x := got[(b*L+2)*H*d+c]; x != 0 {
					t.Fatalf("batch %d channel %d of the fully masked row = %v, want 0", b, c, x)
				}
			}
		}
		for i, x := range got {
			if math.IsNaN(float64(x)) {
				t.Fatalf("NaN at %d", i)
			}
		}
	})
	t.Run("large scores do not overflow", func(t *testing.T) {
		got := download(t, be, must(t)(be.Attention(q, k, v, H, 1e4, nil)), core.Shape{B, L, H * d})
		testutil.AbsClose(t, "attention scale 1e4", got, to32(refAttention(qv, kv, vv, nil, B, L, S, H, d, 1e4)), 1e-4)
	})
}

// TestAttentionPrefixIsAttentionOnTheCut: AttentionPrefix over the first n rows of a cache equals, bit
// for bit, Attention on k and v cut to those rows (the golden generation tests rely on it), on every
// matrix-product path; the rows after n, however large, are never read.
func TestAttentionPrefixIsAttentionOnTheCut(t *testing.T) {
	const B, L, S, H, d = 2, 70, 300, 2, 20
	for name, be := range gemmVariants() {
		for _, n := range []int{0, 1, 131, S} {
			t.Run(fmt.Sprintf("%s/n%d", name, n), func(t *testing.T) {
				r := newRand(9)
				C := H * d
				q, _ := randTensor(t, be, r, B, L, C)
				kc, vc := must(t)(be.Zeros(core.Shape{B, S, C})), must(t)(be.Zeros(core.Shape{B, S, C}))
				// Rows past n hold huge values: reading any of them would change the result.
				junk := upload(t, be, core.Shape{B, S - n, C}, make([]float32, B*(S-n)*C))
				for i := range junk.Storage().([]float32) {
					junk.Storage().([]float32)[i] = 1e30
				}
				k, kv := randTensor(t, be, r, B, n, C)
				v, vv := randTensor(t, be, r, B, n, C)
				for _, w := range []struct {
					dst, src *core.Tensor
					off      int
				}{{kc, k, 0}, {vc, v, 0}, {kc, junk, n}, {vc, junk, n}} {
					if err := be.WriteRows(w.dst, w.src, w.off); err != nil {
						t.Fatal(err)
					}
				}
				got := download(t, be, must(t)(be.AttentionPrefix(q, kc, vc, n, H, 0.37)), core.Shape{B, L, C})
				want := download(t, be, must(t)(be.Attention(q, upload(t, be, core.Shape{B, n, C}, kv),
					upload(t, be, core.Shape{B, n, C}, vv), H, 0.37, nil)), core.Shape{B, L, C})
				testutil.AbsClose(t, "attention prefix", got, want, 0)
			})
		}
	}
}

// TestWriteRows writes two blocks of rows into a tensor of zeros and checks every element.
func TestWriteRows(t *testing.T) {
	be := testBackend()
	const B, S, C = 3, 7, 5
	dst := must(t)(be.Zeros(core.Shape{B, S, C}))
	r := newRand(10)
	a, av := randTensor(t, be, r, B, 2, C)
	c, cv := randTensor(t, be, r, B, 3, C)
	for _, w := range []struct {
		src *core.Tensor
		off int
	}{{a, 1}, {c, 4}} {
		if err := be.WriteRows(dst, w.src, w.off); err != nil {
			t.Fatal(err)
		}
	}
	got := download(t, be, dst, core.Shape{B, S, C})
	for b := range B {
		for s := range S {
			for ch := range C {
				want := float32(0)
				switch {
				case s >= 1 && s < 3:
					want = av[(b*2+s-1)*C+ch]
				case s >= 4:
					want = cv[(b*3+s-4)*C+ch]
				}
				if g := got[(b*S+s)*C+ch]; g != want {
					t.Fatalf("dst[%d, %d, %d] = %v, want %v", b, s, ch, g, want)
				}
			}
		}
	}
}

// BenchmarkAttention is full-sequence attention of VAR-d16 (16 heads of 64 channels, L = S = 680), the
// teacher-forcing shape, for one batch element, on the fast path and the reference code.
func BenchmarkAttention(b *testing.B) {
	b.Run("fast", func(b *testing.B) { benchmarkAttention(b, New(0)) })
	b.Run("reference", func(b *testing.B) { benchmarkAttention(b, NewReference(0)) })
}

func benchmarkAttention(b *testing.B, be *Backend) {
	const L, H, d = 680, 16, 64
	r := newRand(23)
	q, _ := randTensor(b, be, r, 1, L, H*d)
	k, _ := randTensor(b, be, r, 1, L, H*d)
	v, _ := randTensor(b, be, r, 1, L, H*d)
	for b.Loop() {
		if _, err := be.Attention(q, k, v, H, 0.125, nil); err != nil {
			b.Fatal(err)
		}
	}
	// q.k and p.v: 2 multiply-adds per (l, s, channel).
	b.ReportMetric(4*L*L*H*d*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// TestExpf: expf against math.Exp on a dense grid of [-104, 0] and at the special values.
func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-104); x <= 0; x += 1.0 / 1024 {
		got, want := float64(expf(x)), math.Exp(float64(x))
		if want < 0x1p-126 { // subnormal: absolute error of one subnormal step
			if math.Abs(got-want) > 0x1p-149 {
				t.Fatalf("expf(%v) = %g, want %g", x, got, want)
			}
			continue
		}
		ulp := math.Abs(got-want) / (float64(math.Nextafter32(float32(want), float32(math.Inf(1)))) - float64(float32(want)))
		worst = max(worst, ulp)
		if !(ulp <= 2) { // NaN fails too
			t.Fatalf("expf(%v) = %g, want %g (%.2f ulp)", x, got, want, ulp)
		}
	}
	t.Logf("worst error %.2f ulp", worst)
	if got := expf(float32(math.Inf(-1))); got != 0 {
		t.Errorf("expf(-Inf) = %v, want 0", got)
	}
	if got := expf(0); got != 1 {
		t.Errorf("expf(0) = %v, want 1", got)
	}
	if got := expf(float32(math.NaN())); got == got {
		t.Errorf("expf(NaN) = %v, want NaN", got)
	}
}
