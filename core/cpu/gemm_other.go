//go:build !amd64 || purego

package cpu

import "github.com/webvar/webvar/core"

// fastKernel is nil where no assembly micro-kernel exists (or with the purego build tag): gemmNT then
// runs the plain-Go gemmTile path, which is faster than the packed path with a plain-Go micro-kernel.
var fastKernel microKernel

// fastWideKernel is nil: no wide kernel either.
var fastWideKernel microKernel

// fastDequantPanel is nil: quantized panels are packed by the plain-Go code.
var fastDequantPanel func(q core.QuantHost, j0, k0, k1 int, panel []float32) int

// fastPack16 is nil: bRows' panels are packed by interleave.
var fastPack16 func(panel, f []float32, ld, j0, k0, k1 int) int
