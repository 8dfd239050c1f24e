//go:build !amd64 || purego

package cpu

// fastKernel is nil where no assembly micro-kernel exists (or with the purego build tag): gemmNT then
// runs the plain-Go gemmTile path, which is faster than the packed path with a plain-Go micro-kernel.
var fastKernel microKernel
