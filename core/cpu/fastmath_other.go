//go:build !amd64 || purego

package cpu

// fastSiLUAffine is nil: groupNormFast runs its Go loop.
var fastSiLUAffine func(in, out []float32, mean, scale, shift float32) int

// fastSiLU is nil: SiLU runs siLUFast per value.
var fastSiLU func(in, out []float32) int

// fastGELU is nil: GELU runs geluFast per value.
var fastGELU func(in, out []float32) int

// fastExpShift is nil: softmaxFast runs expf per value.
var fastExpShift func(in, out []float32, shift float32) int

// fastGELUErf is nil: the exact GELU runs geluErfFast per value.
var fastGELUErf func(in, out []float32) int
