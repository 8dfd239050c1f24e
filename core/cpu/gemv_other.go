//go:build !amd64 || purego

package cpu

// fastGemv is nil where there is no assembly (or with the purego tag): Linear's plain-Go products of few
// rows are faster than gemvGo (see there).
var fastGemv *gemvKernels
