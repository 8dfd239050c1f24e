package rq_test

import (
	"math"
	"slices"
	"sort"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/rq"
)

// officialProbs is a straight port of sample_from_logits (rqvae/utils/utils.py) on the whole row, as the
// spec: logits/temperature; top_k_logits (out[out < topk(k).values[-1]] = -inf); softmax; top_p_probs
// (sort descending, cum >= p shifted right by one, first kept, renormalise).
func officialProbs(logits []float32, temp float64, k int, p float64) []float64 {
	v := len(logits)
	x := make([]float32, v)
	for i, l := range logits {
		x[i] = l / float32(temp)
	}
	if k <= 0 || k > v {
		k = v
	}
	desc := append([]float32(nil), x...)
	sort.Slice(desc, func(a, b int) bool { return desc[a] > desc[b] })
	kth := desc[k-1]
	for i := range x {
		if x[i] < kth {
			x[i] = float32(math.Inf(-1))
		}
	}
	mx := math.Inf(-1)
	for _, y := range x {
		mx = math.Max(mx, float64(y))
	}
	probs := make([]float64, v)
	sum := 0.0
	for i, y := range x {
		probs[i] = math.Exp(float64(y) - mx)
		sum += probs[i]
	}
	for i := range probs {
		probs[i] /= sum
	}
	if p <= 0 || p >= 1 {
		// The official sampler passes top_p=None as 1.0, which in exact arithmetic keeps every code; its
		// float32 cumulative sum may round to 1 before the end and drop codes of probability below ~1e-7.
		// webvar keeps them (Sampling.TopP), so the spec here is the exact-arithmetic one.
		return probs
	}
	idx := make([]int, v)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
	cum := make([]float64, v)
	c := 0.0
	for r, i := range idx {
		c += probs[i]
		cum[r] = c
	}
	remove := make([]bool, v)
	for r := 1; r < v; r++ {
		remove[r] = cum[r-1] >= p
	}
	out := make([]float64, v)
	sum = 0
	for r, i := range idx {
		if !remove[r] {
			out[i] = probs[i]
			sum += probs[i]
		}
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

func TestRQSamplingFiltersMatchOfficial(t *testing.T) {
	rng := core.NewRNG(5)
	for trial := range 200 {
		v := 1 + rng.Intn(300)
		logits := make([]float32, v)
		for i := range logits {
			logits[i] = float32(rng.Normal() * 3)
			if trial%3 == 0 {
				logits[i] = float32(math.Round(float64(logits[i]))) // ties
			}
		}
		s := rq.Sampling{Temperature: []float64{1, 0.5, 1.7}[trial%3], TopK: []int{0, 1, 5, v, v + 3, 17}[trial%6],
			TopP: []float64{0, 0.92, 0.5, 1, 0.05}[trial%5]}
		got, err := s.Probs(logits)
		if err != nil {
			t.Fatal(err)
		}
		want := officialProbs(logits, s.Temperature, s.TopK, s.TopP)
		for i := range want {
			if (got[i] == 0) != (want[i] == 0) || math.Abs(got[i]-want[i]) > 1e-12 {
				t.Fatalf("trial %d (%+v, V=%d): p[%d] = %v, official %v", trial, s, v, i, got[i], want[i])
			}
		}
	}
}

// The rules at their edges: top-k keeps ties with the k-th largest; top-p keeps codes while the mass
// before them is below p (the first always); top-k 1 is the argmax whatever the random state.
func TestRQSamplingEdges(t *testing.T) {
	probs := func(s rq.Sampling, l []float32) []float64 {
		p, err := s.Probs(l)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	nz := func(p []float64) []int {
		var out []int
		for i, x := range p {
			if x > 0 {
				out = append(out, i)
			}
		}
		return out
	}
	l := []float32{1, 3, 3, 2, 0}
	if got := nz(probs(rq.Sampling{Temperature: 1, TopK: 2}, l)); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("top-2 keeps %v", got)
	}
	if got := nz(probs(rq.Sampling{Temperature: 1, TopK: 3}, l)); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("top-3 keeps %v", got)
	}
	// Probabilities 0.5, 0.3, 0.2: p = 0.5 keeps only the first (the mass before the second is 0.5 >= p);
	// p = 0.6 keeps two; p = 0.8 keeps two (0.8 >= 0.8 drops the third).
	l = []float32{float32(math.Log(0.5)), float32(math.Log(0.3)), float32(math.Log(0.2))}
	for _, c := range []struct {
		p    float64
		want []int
	}{{0.5, []int{0}}, {0.6, []int{0, 1}}, {0.79, []int{0, 1}}, {0.81, []int{0, 1, 2}}, {0.01, []int{0}}, {1, []int{0, 1, 2}}, {0, []int{0, 1, 2}}} {
		if got := nz(probs(rq.Sampling{Temperature: 1, TopP: c.p}, l)); !slices.Equal(got, c.want) {
			t.Errorf("top-p %v keeps %v, want %v", c.p, got, c.want)
		}
	}
	// Temperature divides before the softmax: 0.5 squares the odds.
	p := probs(rq.Sampling{Temperature: 0.5}, []float32{0, float32(math.Log(2))})
	if math.Abs(p[1]/p[0]-4) > 1e-6 {
		t.Errorf("temperature 0.5: odds %v, want 4", p[1]/p[0])
	}
	// Greedy: always the argmax, one draw per row either way.
	rng := core.NewRNG(9)
	logits := []float32{0.1, 2, 0.3, 1.99, -1, 5, 4.9, 0}
	ids, err := rq.Greedy.Sample(logits, 4, rng)
	if err != nil || !slices.Equal(ids, []int{1, 1}) {
		t.Errorf("greedy: %v %v", ids, err)
	}
	// NaN logits are never drawn; a row without a finite logit is an error.
	if got := nz(probs(rq.Sampling{Temperature: 1}, []float32{float32(math.NaN()), 1})); !slices.Equal(got, []int{1}) {
		t.Errorf("NaN kept: %v", got)
	}
	ninf := float32(math.Inf(-1))
	if _, err := (rq.Sampling{Temperature: 1}).Probs([]float32{ninf, ninf}); err == nil {
		t.Error("no finite logit: no error")
	}
}

// Draw follows the distribution: frequencies of 20000 draws within 2% of the probabilities.
func TestRQDrawFrequencies(t *testing.T) {
	p := []float64{0.1, 0, 0.6, 0.3}
	rng := core.NewRNG(3)
	count := make([]int, len(p))
	const n = 20000
	for range n {
		count[rq.Draw(p, rng)]++
	}
	for i := range p {
		if f := float64(count[i]) / n; math.Abs(f-p[i]) > 0.02 {
			t.Errorf("code %d drawn %.3f of the time, want %.2f", i, f, p[i])
		}
	}
	if count[1] != 0 {
		t.Error("a zero-probability code was drawn")
	}
}
