package sample

import (
	"math"
	"sort"
	"testing"

	"github.com/webvar/webvar/core"
)

func TestTopKKeepsTiesWithKth(t *testing.T) {
	row := []float32{1, 5, 3, 5, 2, 3}
	maskTopKTopP(row, 3, 0)
	// The 3rd largest is 3 (5, 5, 3): both 3s survive (logits < kth are dropped).
	want := []bool{false, true, true, true, false, true}
	for i, keep := range want {
		if keep == math.IsInf(float64(row[i]), -1) {
			t.Fatalf("top-k mask %v", row)
		}
	}
}

func TestTopPDropsTailButKeepsTop(t *testing.T) {
	// Probabilities 0.5, 0.25, 0.125, 0.125 (logits are logs).
	mk := func() []float32 {
		return []float32{float32(math.Log(0.5)), float32(math.Log(0.25)), float32(math.Log(0.125)), float32(math.Log(0.125))}
	}
	kept := func(row []float32) (n int) {
		for _, v := range row {
			if !math.IsInf(float64(v), -1) {
				n++
			}
		}
		return
	}
	// top-p 0.7: ascending cumsum 0.125, 0.25, 0.5, 1: drop those <= 0.3 -> the two 0.125s.
	r := mk()
	maskTopKTopP(r, 0, 0.7)
	if kept(r) != 2 || math.IsInf(float64(r[0]), -1) || math.IsInf(float64(r[1]), -1) {
		t.Fatalf("top-p 0.7 mask %v", r)
	}
	// A tiny top-p keeps only the most likely token, never nothing.
	r = mk()
	maskTopKTopP(r, 0, 1e-9)
	if kept(r) != 1 || math.IsInf(float64(r[0]), -1) {
		t.Fatalf("top-p 1e-9 mask %v", r)
	}
	// top-p 1 keeps everything with nonzero mass.
	r = mk()
	maskTopKTopP(r, 0, 1)
	if kept(r) != 4 {
		t.Fatalf("top-p 1 mask %v", r)
	}
}

func TestMultinomialFollowsProbabilities(t *testing.T) {
	rng := core.NewRNG(42)
	p := []float64{0.1, 0, 0.6, 0.3}
	counts := make([]int, len(p))
	const n = 200000
	for i := 0; i < n; i++ {
		counts[Multinomial(p, rng)]++
	}
	for i, want := range p {
		got := float64(counts[i]) / n
		if math.Abs(got-want) > 0.005 {
			t.Errorf("index %d drawn with frequency %.4f, want %.2f", i, got, want)
		}
	}
	if counts[1] != 0 {
		t.Error("zero-probability index drawn")
	}
}

func TestCFGMix(t *testing.T) {
	// raw rows: cond then uncond; t = cfg*ratio = 1.5*2/3 = 1.
	raw := []float32{1, 2, 3, 4, 0.5, 0.5, 1, 1}
	got := CFGMix(raw, 1.5, 2.0/3)
	want := []float32{1.5, 3.5, 5, 7}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("cfg mix %v, want %v", got, want)
		}
	}
}

func TestRNGDeterministicAndUniform(t *testing.T) {
	a, b := core.NewRNG(1), core.NewRNG(1)
	for i := 0; i < 100; i++ {
		if a.Uint64() != b.Uint64() {
			t.Fatal("same seed, different streams")
		}
	}
	r := core.NewRNG(2)
	sum := 0.0
	for i := 0; i < 100000; i++ {
		f := r.Float64()
		if f < 0 || f >= 1 {
			t.Fatalf("Float64 %v outside [0,1)", f)
		}
		sum += f
	}
	if m := sum / 100000; math.Abs(m-0.5) > 0.01 {
		t.Fatalf("mean %v", m)
	}
	// Gumbel mean is the Euler-Mascheroni constant.
	g := 0.0
	for i := 0; i < 100000; i++ {
		g += r.Gumbel()
	}
	if m := g / 100000; math.Abs(m-0.5772) > 0.02 {
		t.Fatalf("Gumbel mean %v", m)
	}
}

func maskTopKTopPBySorting(row []float32, topK int, topP float64) {
	v := len(row)
	ninf := float32(math.Inf(-1))
	if topK > 0 && topK < v {
		s := append([]float32(nil), row...)
		sort.Slice(s, func(i, j int) bool { return s[i] > s[j] })
		for i, x := range row {
			if x < s[topK-1] {
				row[i] = ninf
			}
		}
	}
	if topP > 0 {
		idx := make([]int, v)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] < row[idx[b]] })
		probs := softmax64(row)
		cum := 0.0
		for r, i := range idx {
			cum += probs[i]
			if r < v-1 && cum <= 1-topP {
				row[i] = ninf
			}
		}
	}
}

func TestMaskTopKTopPEqualsSorting(t *testing.T) {
	rng := core.NewRNG(7)
	for trial := 0; trial < 300; trial++ {
		v := 1 + int(rng.Float64()*600)
		row := make([]float32, v)
		for i := range row {
			row[i] = float32(rng.Float64()*8 - 4)
			if trial%3 == 0 { // many ties, including with the k-th largest
				row[i] = float32(int(row[i] * 2))
			}
		}
		topK := int(rng.Float64() * float64(v+2))
		topP := []float64{0, 0.5, 0.9, 0.95, 1}[trial%5]
		got, want := append([]float32(nil), row...), append([]float32(nil), row...)
		maskTopKTopP(got, topK, topP)
		maskTopKTopPBySorting(want, topK, topP)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("trial %d (V %d, k %d, p %g): entry %d is %v, sorting gives %v", trial, v, topK, topP, i, got[i], want[i])
			}
		}
	}
}

// filterProbs must give bit for bit what maskTopKTopP then softmax64 give (the sampled tokens depend on
// it), for the masked row and for the probabilities, ties and infinite or NaN logits included.
func TestFilterProbsEqualsMaskThenSoftmax(t *testing.T) {
	rng := core.NewRNG(11)
	for trial := 0; trial < 400; trial++ {
		v := 1 + int(rng.Float64()*600)
		row := make([]float32, v)
		for i := range row {
			row[i] = float32(rng.Float64()*16 - 8)
			if trial%3 == 0 { // many ties, including with the k-th largest
				row[i] = float32(int(row[i] * 2))
			}
		}
		switch trial % 7 {
		case 1:
			row[int(rng.Float64()*float64(v))] = float32(math.Inf(-1))
		case 2:
			row[int(rng.Float64()*float64(v))] = float32(math.Inf(1))
		case 3:
			row[int(rng.Float64()*float64(v))] = float32(math.NaN())
		case 4: // -0 and +0 compare equal: their order is by index
			for i := range row {
				if i%5 == 0 {
					row[i] = float32(math.Copysign(0, -1))
				} else if i%5 == 1 {
					row[i] = 0
				}
			}
		}
		topK := int(rng.Float64() * float64(v+2))
		topP := []float64{0, 0.5, 0.9, 0.95, 1}[trial%5]
		got, want := append([]float32(nil), row...), append([]float32(nil), row...)
		gotP := filterProbs(got, topK, topP)
		maskTopKTopP(want, topK, topP)
		wantP := softmax64(want)
		for i := range got {
			same := got[i] == want[i] || math.IsNaN(float64(got[i])) && math.IsNaN(float64(want[i]))
			sameP := gotP[i] == wantP[i] || math.IsNaN(gotP[i]) && math.IsNaN(wantP[i])
			if !same || !sameP {
				t.Fatalf("trial %d (V %d, k %d, p %g): entry %d is %v (p %v), mask+softmax gives %v (p %v)",
					trial, v, topK, topP, i, got[i], gotP[i], want[i], wantP[i])
			}
		}
	}
}

func BenchmarkFilterProbsD16Row(b *testing.B) {
	rng := core.NewRNG(3)
	row := make([]float32, 4096)
	for i := range row {
		row[i] = float32(rng.Float64()*8 - 4)
	}
	buf := make([]float32, len(row))
	b.Run("filterProbs", func(b *testing.B) {
		for b.Loop() {
			copy(buf, row)
			filterProbs(buf, 900, 0.95)
		}
	})
	b.Run("mask+softmax", func(b *testing.B) {
		for b.Loop() {
			copy(buf, row)
			maskTopKTopP(buf, 900, 0.95)
			softmax64(buf)
		}
	})
}
