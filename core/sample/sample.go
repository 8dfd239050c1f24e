// Package sample is the token sampler shared by the model families: classifier-free guidance mixes and the
// official top-k / top-p / multinomial (and Gumbel more_smooth) sampling of VAR's
// sample_with_top_k_top_p_, run on the host over downloaded logits.
package sample

import (
	"cmp"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/webvar/webvar/core"
)

// Sampling runs on the host over downloaded logits: per scale it touches B*pn^2*V values, which is small
// next to the transformer, and keeps the sampler identical on every backend.

// CFGMix is classifier-free guidance at ratio = si/(K-1): logits = (1+t)*cond - t*uncond with t = cfg*ratio,
// for raw [2B, l, V] whose rows [:B] are conditional and [B:] unconditional. Computed in float32 like the
// official code. Returns [B*l*V].
func CFGMix(raw []float32, cfg, ratio float64) []float32 {
	t := cfg * ratio
	a, b := float32(1+t), float32(t)
	half := len(raw) / 2
	out := make([]float32, half)
	for i := range out {
		out[i] = a*raw[i] - b*raw[half+i]
	}
	return out
}

// maskTopKTopP applies top-k then top-p filtering to one row of logits in place, setting dropped entries
// to -Inf (official sample_with_top_k_top_p_):
//   - top-k (k > 0): drop logits below the k-th largest (ties with it are kept);
//   - top-p (p > 0): sort ascending, drop the entries whose cumulative softmax probability is <= 1-p,
//     always keeping the largest.
//
// The k-th largest is found by selection (O(V)), and top-p sorts only the entries top-k kept: the -Inf
// entries have probability exactly 0, come first in the ascending order and add nothing to the cumulative
// sum, and the surviving entries keep their relative (stable) order, so the result is the same as sorting
// the whole row. With V = 4096 and k = 900 this is what makes host sampling cheap next to a GPU forward.
func maskTopKTopP(row []float32, topK int, topP float64) {
	v := len(row)
	ninf := float32(math.Inf(-1))
	maskTopK(row, topK)
	if topP > 0 {
		idx := make([]int, 0, v)
		for i, x := range row {
			if x != ninf {
				idx = append(idx, i)
			}
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(row[a], row[b]) })
		probs := softmax64(row)
		cum := 0.0
		for r, i := range idx {
			cum += probs[i]
			if r < len(idx)-1 && cum <= 1-topP {
				row[i] = ninf
			}
		}
	}
}

// filterProbs applies maskTopKTopP to row in place and returns softmax64 of the masked row: exactly what
// maskTopKTopP then softmax64 give, bit for bit, at a fraction of the cost (sampling runs on the host
// between two scales while the GPU waits, and in the browser on one thread). The exp of each surviving
// logit is taken once and shared by the top-p cumulative sum and the final softmax (both subtract the same
// maximum: top-p always keeps the largest entry), the loops run over the top-k survivors only, and the
// ascending order is a native sort of (value, index) keys, which is the stable sort's order.
// Rows with NaN or infinite logits take the plain path.
func filterProbs(row []float32, topK int, topP float64) []float64 {
	v := len(row)
	ninf := float32(math.Inf(-1))
	maskTopK(row, topK)
	idx := make([]int, 0, v) // survivors, in index order
	mx := math.Inf(-1)
	for i, x := range row {
		if x != ninf {
			idx = append(idx, i)
			mx = math.Max(mx, float64(x))
		}
	}
	if math.IsNaN(mx) || math.IsInf(mx, 0) {
		maskTopKTopP(row, 0, topP) // top-k is applied already; a second pass would change nothing
		return softmax64(row)
	}
	p := make([]float64, v)
	sum := 0.0
	for _, i := range idx {
		e := math.Exp(float64(row[i]) - mx)
		p[i] = e
		sum += e
	}
	if topP > 0 {
		// Ascending by value, ties by index: one uint64 per survivor, the value's bits mapped to an
		// order-preserving integer (-0 as +0, which compare equal) above the index, sorted natively.
		keys := make([]uint64, len(idx))
		for r, i := range idx {
			keys[r] = uint64(orderedBits(row[i]))<<32 | uint64(i)
		}
		slices.Sort(keys)
		cum := 0.0
		for r, key := range keys {
			i := int(uint32(key))
			cum += p[i] / sum
			if r < len(keys)-1 && cum <= 1-topP {
				row[i] = ninf
			}
		}
		// The survivors' exps are unchanged; only the sum shrinks, taken again in index order.
		sum = 0
		for _, i := range idx {
			if row[i] == ninf {
				p[i] = 0
			} else {
				sum += p[i]
			}
		}
	}
	for _, i := range idx {
		p[i] /= sum
	}
	return p
}

// maskTopK sets the logits below the k-th largest to -Inf (ties with it are kept); k <= 0 or >= len(row)
// keeps them all.
func maskTopK(row []float32, k int) {
	if k <= 0 || k >= len(row) {
		return
	}
	kth := kthLargest(append([]float32(nil), row...), k)
	ninf := float32(math.Inf(-1))
	for i, x := range row {
		if x < kth {
			row[i] = ninf
		}
	}
}

// orderedBits maps a non-NaN float32 to a uint32 of the same order (-0 and +0 both to +0's).
func orderedBits(x float32) uint32 {
	if x == 0 {
		x = 0
	}
	u := math.Float32bits(x)
	if u&(1<<31) != 0 {
		return ^u
	}
	return u | 1<<31
}

// kthLargest returns the k-th largest value of s (1-based; s is reordered): what s sorted descending
// holds at k-1. Three-way partitioning around a median-of-three pivot keeps it linear on average and
// terminating on runs of equal values.
func kthLargest(s []float32, k int) float32 {
	lo, hi := 0, len(s) // the answer is within s[lo:hi], at rank k-1-lo there (descending)
	want := k - 1
	for {
		if hi-lo == 1 {
			return s[lo]
		}
		a, b, c := s[lo], s[lo+(hi-lo)/2], s[hi-1]
		pivot := max(min(a, b), min(max(a, b), c))
		// Partition s[lo:hi] into > pivot, == pivot, < pivot.
		gt, i, lt := lo, lo, hi
		for i < lt {
			switch x := s[i]; {
			case x > pivot:
				s[gt], s[i] = s[i], s[gt]
				gt++
				i++
			case x < pivot:
				lt--
				s[lt], s[i] = s[i], s[lt]
			default:
				i++
			}
		}
		switch {
		case want < gt:
			hi = gt
		case want < lt:
			return pivot
		default:
			lo = lt
		}
	}
}

// softmax64 is the softmax of a row (with -Inf entries) in float64. -Inf entries get exactly 0 without an
// exp (most of a row after top-k); the sum, taken in index order, is the same either way.
func softmax64(row []float32) []float64 {
	ninf := float32(math.Inf(-1))
	mx := math.Inf(-1)
	for _, x := range row {
		if x != ninf {
			mx = math.Max(mx, float64(x))
		}
	}
	p := make([]float64, len(row))
	sum := 0.0
	for i, x := range row {
		if x == ninf {
			continue
		}
		e := math.Exp(float64(x) - mx)
		p[i] = e
		sum += e
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// Multinomial draws an index with probability p[i] from one uniform variate (torch.multinomial with one
// sample; p need not be normalised exactly: the last possible index takes what rounding leaves).
func Multinomial(p []float64, rng *core.RNG) int {
	u := rng.Float64()
	cum, last := 0.0, 0
	for i, x := range p {
		if x <= 0 {
			continue
		}
		cum += x
		last = i
		if u < cum {
			return i
		}
	}
	// Rounding left the cumulative sum just under 1 and u above it: the last possible index.
	return last
}

// gumbelSoftmax is the soft one-hot of more_smooth: softmax((logits*scale + g) / tau) with fresh Gumbel
// noise g per entry (-Inf logits stay at probability 0).
func gumbelSoftmax(row []float32, scale, tau float64, rng *core.RNG) []float32 {
	y := make([]float64, len(row))
	mx := math.Inf(-1)
	for i, x := range row {
		y[i] = (float64(x)*scale + rng.Gumbel()) / tau
		mx = math.Max(mx, y[i])
	}
	sum := 0.0
	for i := range y {
		y[i] = math.Exp(y[i] - mx)
		sum += y[i]
	}
	out := make([]float32, len(row))
	for i := range y {
		out[i] = float32(y[i] / sum)
	}
	return out
}

// Scale samples the tokens of one scale from CFG-mixed logits [N, V] (N = B*pn^2, rows in image then
// position order). With moreSmooth it also returns the Gumbel-softmax weights [N, V] of the official
// more_smooth path (computed on the top-k/top-p masked logits times 1+ratio, tau = max(0.27*(1-0.95*ratio),
// 0.005)). RNG order: first one uniform per row for the tokens, then the Gumbel noise row by row.
func Scale(logits []float32, v, topK int, topP float64, moreSmooth bool, ratio float64, rng *core.RNG) ([]int, []float32) {
	n := len(logits) / v
	// Filtering needs no random numbers, so rows are filtered in parallel; the draws then take the
	// generator's variates in row order, as a sequential loop would.
	probs := make([][]float64, n)
	workers := min(n, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := w; r < n; r += workers {
				probs[r] = filterProbs(logits[r*v:(r+1)*v], topK, topP)
			}
		}()
	}
	wg.Wait()
	ids := make([]int, n)
	for r := range ids {
		ids[r] = Multinomial(probs[r], rng)
	}
	if !moreSmooth {
		return ids, nil
	}
	tau := math.Max(0.27*(1-ratio*0.95), 0.005)
	soft := make([]float32, 0, len(logits))
	for r := 0; r < n; r++ {
		soft = append(soft, gumbelSoftmax(logits[r*v:(r+1)*v], 1+ratio, tau, rng)...)
	}
	return ids, soft
}
