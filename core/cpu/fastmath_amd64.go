//go:build amd64 && !purego

package cpu

import (
	"math"

	"golang.org/x/sys/cpu"
)

// fastSiLUAffine is groupNormFast's SIMD loop where the CPU has AVX2: out[i] = siLUFast((in[i]-mean)*scale
// + shift) for the whole 8-value blocks of in, returning how many values it wrote (the caller does the
// rest). Nil otherwise.
var fastSiLUAffine func(in, out []float32, mean, scale, shift float32) int = func() func([]float32, []float32, float32, float32, float32) int {
	if cpu.X86.HasAVX2 {
		return siluAffine8
	}
	return nil
}()

// fastSiLU is siLUFast over the whole 8-value blocks of in where the CPU has AVX2 (the rest is the
// caller's), returning how many values it wrote; nil otherwise. It is the affine SiLU loop with an
// identity that keeps every value, -0 included: (x - 0) * 1 + (-0) is x.
var fastSiLU func(in, out []float32) int = func() func([]float32, []float32) int {
	if cpu.X86.HasAVX2 {
		negZero := float32(math.Copysign(0, -1))
		return func(in, out []float32) int { return siluAffine8(in, out, 0, 1, negZero) }
	}
	return nil
}()

// fastGELU is geluFast over the whole 8-value blocks of in where the CPU has AVX2 (the rest is the
// caller's), returning how many values it wrote; nil otherwise.
var fastGELU func(in, out []float32) int = func() func([]float32, []float32) int {
	if cpu.X86.HasAVX2 {
		return geluTanh8
	}
	return nil
}()

// fastGELUErf is geluErfFast over the whole 8-value blocks of in where the CPU has AVX2 (the rest is the
// caller's), returning how many values it wrote; nil otherwise.
var fastGELUErf func(in, out []float32) int = func() func([]float32, []float32) int {
	if cpu.X86.HasAVX2 {
		return geluErf8
	}
	return nil
}()

// fastExpShift writes expf(in[i] - shift) for the whole 8-value blocks of in where the CPU has AVX2,
// returning how many values it wrote; nil otherwise. in and out may be the same slice.
var fastExpShift func(in, out []float32, shift float32) int = func() func([]float32, []float32, float32) int {
	if cpu.X86.HasAVX2 {
		return expShift8
	}
	return nil
}()

// siluTab holds the constants of siluAffineAVX2, geluTanhAVX2, geluErfAVX2 and expShiftAVX2, each broadcast to 8 lanes, in the order of the T_
// offsets in fastmath_amd64.s; the float constants are expf's, rounded to float32 as there.
var siluTab = func() (t [siluTabLen][8]uint32) {
	f := math.Float32bits
	vals := [siluTabLen]uint32{
		0x80000000, 0x7fffffff, f(-104),
		f(1.44269504088896341), f(1 << 23 * 1.5), f(0.693145751953125), f(1.42860682030941723212e-6),
		f(1. / 5040), f(1. / 720), f(1. / 120), f(1. / 24), f(1. / 6), f(1. / 2), f(1),
		64 + 127, f(1.0 / (1 << 64)), f(0.7978845608028654), f(0.044715),
		// geluErfFast's: 1/sqrt(2), 2, erfSplit, erfSmall's p0..p5, erfcLarge's r0..r7
		f(0.70710678118654752), f(2), f(erfSplit),
		f(erfP0), f(erfP1), f(erfP2), f(erfP3), f(erfP4), f(erfP5),
		f(erfR0), f(erfR1), f(erfR2), f(erfR3), f(erfR4), f(erfR5), f(erfR6), f(erfR7),
	}
	for i, v := range vals {
		for j := range t[i] {
			t[i][j] = v
		}
	}
	return t
}()

const siluTabLen = 35

func siluAffine8(in, out []float32, mean, scale, shift float32) int {
	blocks := min(len(in), len(out)) / 8
	if blocks == 0 {
		return 0
	}
	siluAffineAVX2(blocks, &in[0], &out[0], mean, scale, shift, &siluTab)
	return 8 * blocks
}

// siluAffineAVX2 is siluAffine8's loop over 8*blocks values (fastmath_amd64.s).
//
//go:noescape
func siluAffineAVX2(blocks int, in, out *float32, mean, scale, shift float32, tab *[siluTabLen][8]uint32)

func geluTanh8(in, out []float32) int {
	blocks := min(len(in), len(out)) / 8
	if blocks == 0 {
		return 0
	}
	geluTanhAVX2(blocks, &in[0], &out[0], &siluTab)
	return 8 * blocks
}

func geluErf8(in, out []float32) int {
	blocks := min(len(in), len(out)) / 8
	if blocks == 0 {
		return 0
	}
	geluErfAVX2(blocks, &in[0], &out[0], &siluTab)
	return 8 * blocks
}

// geluErfAVX2 is geluErf8's loop over 8*blocks values (fastmath_amd64.s).
//
//go:noescape
func geluErfAVX2(blocks int, in, out *float32, tab *[siluTabLen][8]uint32)

func expShift8(in, out []float32, shift float32) int {
	blocks := min(len(in), len(out)) / 8
	if blocks == 0 {
		return 0
	}
	expShiftAVX2(blocks, &in[0], &out[0], shift, &siluTab)
	return 8 * blocks
}

// geluTanhAVX2 is geluTanh8's loop over 8*blocks values (fastmath_amd64.s).
//
//go:noescape
func geluTanhAVX2(blocks int, in, out *float32, tab *[siluTabLen][8]uint32)

// expShiftAVX2 is expShift8's loop over 8*blocks values (fastmath_amd64.s).
//
//go:noescape
func expShiftAVX2(blocks int, in, out *float32, shift float32, tab *[siluTabLen][8]uint32)
