package core

import "math"

// RNG is webvar's seeded random generator: xoshiro256** (Blackman and Vigna) with its 256-bit state filled
// from the 64-bit seed by SplitMix64. PyTorch's CPU generator (mt19937 plus its own float transforms)
// cannot be reproduced bit for bit, so webvar defines its own: the same seed and request give the same
// tokens on the same backend, on every platform (the generator is pure integer arithmetic).
//
// Uniform floats take the top 53 bits of a draw. The sampler draws, in this order, for each image b and
// each token position of a scale (row-major): one uniform for the multinomial choice and, with
// more_smooth, one Gumbel variate per vocabulary entry.
type RNG struct{ s [4]uint64 }

// NewRNG seeds a generator.
func NewRNG(seed uint64) *RNG {
	r := &RNG{}
	x := seed
	for i := range r.s {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		r.s[i] = z ^ (z >> 31)
	}
	return r
}

func rotl(x uint64, k uint) uint64 { return (x << k) | (x >> (64 - k)) }

// Uint64 returns the next 64 random bits.
func (r *RNG) Uint64() uint64 {
	s := &r.s
	out := rotl(s[1]*5, 7) * 9
	t := s[1] << 17
	s[2] ^= s[0]
	s[3] ^= s[1]
	s[1] ^= s[2]
	s[0] ^= s[3]
	s[2] ^= t
	s[3] = rotl(s[3], 45)
	return out
}

// Float64 returns a uniform value in [0, 1).
func (r *RNG) Float64() float64 { return float64(r.Uint64()>>11) * (1.0 / (1 << 53)) }

// Intn returns a uniform integer in [0, n) (n > 0), without modulo bias.
func (r *RNG) Intn(n int) int {
	if n <= 0 {
		return 0
	}
	bound := uint64(n)
	limit := math.MaxUint64 - math.MaxUint64%bound
	for {
		if v := r.Uint64(); v < limit {
			return int(v % bound)
		}
	}
}

// Gumbel returns a standard Gumbel variate -log(E) with E ~ Exp(1), the noise of Gumbel-softmax.
func (r *RNG) Gumbel() float64 {
	// 1-u is in (0, 1], so E = -log(1-u) is finite; E == 0 would give +Inf, so redraw that case.
	for {
		e := -math.Log(1 - r.Float64())
		if e > 0 {
			return -math.Log(e)
		}
	}
}

// Normal returns a standard normal variate (Box-Muller: sqrt(-2 ln u) cos(2 pi v) for u in (0, 1)),
// the Gaussian noise of MAR's diffusion sampler.
func (r *RNG) Normal() float64 {
	for {
		if u := r.Float64(); u > 0 {
			return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*r.Float64())
		}
	}
}
