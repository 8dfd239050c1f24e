//go:build !amd64 || purego

package cpu

// fastSiLUAffine is nil: groupNormFast runs its Go loop.
var fastSiLUAffine func(in, out []float32, mean, scale, shift float32) int
