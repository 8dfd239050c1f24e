package rq

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/sample"
)

// Sampling is the official sample_from_logits' arguments (rqvae/utils/utils.py), which RQTransformer.sample
// applies to every (position, depth) step's logits.
type Sampling struct {
	// Temperature divides the logits first (> 0).
	Temperature float64
	// TopK keeps the logits >= the k-th largest (top_k_logits: ties with it stay); 0 or >= the vocabulary
	// keeps them all (the official None, which the sampler turns into the vocabulary size).
	TopK int
	// TopP is the nucleus mass (top_p_probs): in probability order, a code is kept while the mass of the
	// codes before it is below TopP, so the most likely one always is. 0 or 1 is the official None, which
	// the sampler passes on as 1.0: every code of non-zero probability is kept (the official float32
	// cumulative sum can reach 1.0 early by rounding and drop codes of probability below ~1e-7; webvar
	// does not reproduce that).
	TopP float64
}

// Greedy is top-k 1: every step takes the most likely code (with the official code, multinomial then
// returns the argmax whatever the random state).
var Greedy = Sampling{Temperature: 1, TopK: 1}

func (s Sampling) check() error {
	if !(s.Temperature > 0) || math.IsInf(s.Temperature, 0) {
		return fmt.Errorf("rq: temperature %v: want > 0", s.Temperature)
	}
	if s.TopK < 0 {
		return fmt.Errorf("rq: top-k %d: want >= 0 (0: all)", s.TopK)
	}
	if !(s.TopP >= 0) || s.TopP > 1 {
		return fmt.Errorf("rq: top-p %v: want 0..1 (0: off)", s.TopP)
	}
	return nil
}

// Probs is the distribution sample_from_logits draws from for one row of logits, in the official order:
// logits / temperature (float32), top_k_logits, NaN -> -Inf, softmax, top_p_probs, renormalisation. The
// softmax and the top-p cumulative sums are taken in float64 (the official code's are float32: the two
// differ only where a cumulative sum lands within rounding of TopP). It returns an error when no logit is
// finite.
func (s Sampling) Probs(logits []float32) ([]float64, error) {
	v := len(logits)
	ninf := float32(math.Inf(-1))
	x := make([]float32, v)
	t := float32(s.Temperature)
	for i, l := range logits {
		x[i] = l / t
	}
	if k := s.TopK; k > 0 && k < v {
		// top_k_logits: out[out < topk(logits, k).values[-1]] = -Inf. NaN entries are never below it and
		// are handled next, as the official code does. The k-th largest is found by selection on the keys
		// of the non-NaN logits (descending logit order).
		keys := make([]uint64, 0, v)
		for i, y := range x {
			if !math.IsNaN(float64(y)) {
				keys = append(keys, uint64(^orderedBits(y))<<32|uint64(i))
			}
		}
		if len(keys) >= k {
			selectSmallest(keys, k)
			kth := slices.Max(keys[:k])
			t := x[int(uint32(kth))]
			for i, y := range x {
				if y < t {
					x[i] = ninf
				}
			}
		}
	}
	mx := math.Inf(-1)
	for i, y := range x {
		if math.IsNaN(float64(y)) {
			x[i] = ninf
			continue
		}
		mx = math.Max(mx, float64(y))
	}
	if math.IsInf(mx, 0) {
		return nil, fmt.Errorf("rq: no finite logit to sample from")
	}
	p := make([]float64, v)
	sum := 0.0
	var live []int // entries of non-zero probability
	for i, y := range x {
		if y == ninf {
			continue
		}
		e := math.Exp(float64(y) - mx)
		p[i] = e
		sum += e
		live = append(live, i)
	}
	for _, i := range live {
		p[i] /= sum
	}
	top := s.TopP
	if top <= 0 || top > 1 {
		top = 1
	}
	// top_p_probs: sort descending; drop a code when the cumulative mass of the codes before it is >= p.
	// Zero-probability codes are dropped either way, so only the live ones are ordered, ties in index order
	// (a stable sort's). The probability order is the logit order (exp is monotonic and maps equal logits
	// to equal probabilities), so the order is that of uint64 keys: the logit's bits mapped to an
	// order-reversing integer above the index. Only the head of the order is needed, up to where the mass
	// reaches p: it is selected and sorted in growing chunks instead of sorting all V keys at every step.
	kept := 1.0
	if top < 1 && len(live) > 1 {
		keys := make([]uint64, len(live))
		for r, i := range live {
			keys[r] = uint64(^orderedBits(x[i]))<<32 | uint64(i)
		}
		cum, n := 0.0, 0 // mass of the first n codes in order, all kept
		for lo, m := 0, 64; n == 0 || (lo < len(keys) && cum < top); m *= 4 {
			hi := min(lo+m, len(keys))
			selectSmallest(keys[lo:], hi-lo)
			slices.Sort(keys[lo:hi])
			for _, k := range keys[lo:hi] {
				if n > 0 && cum >= top {
					break
				}
				cum += p[int(uint32(k))]
				n++
			}
			lo = hi
		}
		keep := make([]bool, v)
		for _, k := range keys[:n] {
			keep[int(uint32(k))] = true
		}
		kept = 0
		for _, i := range live {
			if keep[i] {
				kept += p[i]
			} else {
				p[i] = 0
			}
		}
	}
	for _, i := range live {
		p[i] /= kept
	}
	return p, nil
}

// selectSmallest reorders keys so that its first k entries are its k smallest (in any order): Hoare's
// quickselect with a median-of-three pivot. Keys are distinct (each holds its index).
func selectSmallest(keys []uint64, k int) {
	lo, hi := 0, len(keys)-1
	for k > 0 && k < len(keys) && lo < hi {
		mid := lo + (hi-lo)/2
		a, b, c := keys[lo], keys[mid], keys[hi]
		pivot := max(min(a, b), min(max(a, b), c))
		i, j := lo, hi
		for i <= j {
			for keys[i] < pivot {
				i++
			}
			for keys[j] > pivot {
				j--
			}
			if i <= j {
				keys[i], keys[j] = keys[j], keys[i]
				i++
				j--
			}
		}
		// keys[lo..j] <= pivot <= keys[i..hi]; entries between are the pivot.
		switch {
		case k-1 <= j:
			hi = j
		case k-1 >= i:
			lo = i
		default:
			return
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

// Draw samples a code from probs (torch.multinomial with one sample) with one uniform variate of rng.
func Draw(probs []float64, rng *core.RNG) int { return sample.Multinomial(probs, rng) }

// Sample draws one code per row of logits [n, v] (rows in image order), one uniform variate per row. The
// rows are filtered in parallel (no random numbers are involved); the draws then take the generator's
// variates in row order.
func (s Sampling) Sample(logits []float32, v int, rng *core.RNG) ([]int, error) {
	n := len(logits) / v
	probs := make([][]float64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	workers := min(n, runtime.GOMAXPROCS(0))
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := w; r < n; r += workers {
				probs[r], errs[r] = s.Probs(logits[r*v : (r+1)*v])
			}
		}()
	}
	wg.Wait()
	out := make([]int, n)
	for r := range n {
		if errs[r] != nil {
			return nil, fmt.Errorf("%w (row %d)", errs[r], r)
		}
		out[r] = Draw(probs[r], rng)
	}
	return out, nil
}
