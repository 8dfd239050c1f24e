package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/webvar/webvar/core"
)

// testBackend uses 3 goroutines even on a 2-core machine so that parallelFor's uneven splits are exercised.
func testBackend() *Backend { return New(3) }

// gemmVariants are backends that differ only in how they compute matrix products: the reference code, the
// packed path with the plain-Go micro-kernels (runs everywhere), with and without the wide kernel, and the
// packed path with this machine's SIMD kernels where there are some (New's, and the narrow kernel alone
// where New also has a wide one), and the matrix-vector path of Linear.
func gemmVariants() map[string]*Backend {
	v := map[string]*Backend{
		"reference":      NewReference(3),
		"packed-go":      {threads: 3, kernel: kernel6x16Go},
		"packed-go-wide": {threads: 3, kernel: kernel6x16Go, wide: kernel6x32Go},
	}
	if fastKernel != nil {
		v["packed-simd"] = New(3)
	}
	if fastWideKernel != nil {
		v["packed-simd-narrow"] = &Backend{threads: 3, kernel: fastKernel, fastMath: true}
	}
	// The matrix-vector path (Linear with few rows of x) beside the reference products, in plain Go and,
	// where New has it, in assembly.
	v["gemv-go"] = &Backend{threads: 3, gemvPath: gemvGo}
	if fastGemv != nil {
		v["gemv-simd"] = &Backend{threads: 3, gemvPath: fastGemv}
	}
	return v
}

// upload makes a backend tensor of the given shape from data (copied).
func upload(t testing.TB, be *Backend, shape core.Shape, data []float32) *core.Tensor {
	t.Helper()
	x, err := be.Upload(core.HostTensor{Shape: shape, Data: data})
	if err != nil {
		t.Fatalf("upload %v: %v", shape, err)
	}
	return x
}

// download returns a copy of x's values after checking its shape.
func download(t testing.TB, be *Backend, x *core.Tensor, want core.Shape) []float32 {
	t.Helper()
	h, err := be.Download(x)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if !h.Shape.Equal(want) {
		t.Fatalf("result shape %v, want %v", h.Shape, want)
	}
	return h.Data
}

// must returns a function that fails t on a non-nil error and otherwise returns the tensor, so that an op
// call can be wrapped as must(t)(be.Op(...)).
func must(t testing.TB) func(*core.Tensor, error) *core.Tensor {
	return func(x *core.Tensor, err error) *core.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
}

// newRand is a deterministic generator; each test seeds its own.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// randn returns n standard normal values.
func randn(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// randTensor uploads a standard normal tensor and returns it with its values.
func randTensor(t testing.TB, be *Backend, r *rand.Rand, shape ...int) (*core.Tensor, []float32) {
	t.Helper()
	v := randn(r, core.Shape(shape).Numel())
	return upload(t, be, shape, v), v
}

// to32 rounds a float64 reference to float32 for comparison.
func to32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
