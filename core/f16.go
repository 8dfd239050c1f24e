package core

import "math"

// F32ToF16 rounds f to the nearest IEEE binary16 value, ties to even. Values beyond the half range round
// to ±Inf (ok is then false for a finite f, so the writer can refuse to lose a weight silently); NaN stays
// a quiet NaN, keeping the top payload bits and the sign.
func F32ToF16(f float32) (h uint16, ok bool) {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00, true
		}
		return sign | 0x7e00 | uint16(mant>>13), true
	}
	e := exp - 127 + 15 // biased half exponent
	if e >= 0x1f {
		return sign | 0x7c00, false
	}
	if e <= 0 {
		// Subnormal half: value = m * 2^-24, and f = full * 2^(exp-150), so m = full >> (14-e) with the
		// shifted-out bits deciding the rounding. A carry out of the top makes the smallest normal,
		// whose encoding is exactly the next integer.
		if exp == 0 {
			return sign, true // f32 subnormals are far below half's range
		}
		full := mant | 0x800000
		shift := uint(14 - e)
		if shift > 24 {
			return sign, true // below half the smallest subnormal: rounds to zero
		}
		m := full >> shift
		rem := full & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && m&1 == 1 {
			m++
		}
		return sign | uint16(m), true
	}
	h = sign | uint16(e)<<10 | uint16(mant>>13)
	rem := mant & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && h&1 == 1 {
		h++ // a carry into the exponent is the correct next value, up to Inf
	}
	return h, h&0x7fff != 0x7c00
}

// F16ToF32 converts an IEEE binary16 value to float32 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		// Zero or subnormal: mant * 2^-24 is exact in float32.
		v := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(sign | math.Float32bits(v))
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp-15+127)<<23 | mant<<13)
}
