package cpu

import (
	"math"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/webvar/webvar/core"
)

func TestNewAndName(t *testing.T) {
	if got := New(0).threads; got != runtime.NumCPU() {
		t.Errorf("New(0) uses %d threads, want NumCPU = %d", got, runtime.NumCPU())
	}
	if got := New(-3).threads; got != runtime.NumCPU() {
		t.Errorf("New(-3) uses %d threads, want %d", got, runtime.NumCPU())
	}
	if got := New(5).threads; got != 5 {
		t.Errorf("New(5) uses %d threads", got)
	}
	if New(1).Name() != "cpu" {
		t.Errorf("Name() = %q", New(1).Name())
	}
}

func TestUploadDownloadCopy(t *testing.T) {
	be := testBackend()
	data := []float32{1, 2, 3, 4, 5, 6}
	x := upload(t, be, core.Shape{2, 3}, data)
	data[0] = 100 // the tensor must not alias the host slice
	h, err := be.Download(x)
	if err != nil {
		t.Fatal(err)
	}
	if h.Data[0] != 1 || !h.Shape.Equal(core.Shape{2, 3}) {
		t.Fatalf("download = %v %v", h.Shape, h.Data)
	}
	h.Data[1] = 100 // nor the downloaded one
	if again := download(t, be, x, core.Shape{2, 3}); again[1] != 2 {
		t.Fatalf("download aliases the tensor: %v", again)
	}
	be.Free(x)
	be.Free(nil)

	// A view made by core.Reshape is an ordinary tensor of this backend.
	v := must(t)(core.Reshape(x, 3, 2))
	if got := download(t, be, v, core.Shape{3, 2}); !slices.Equal(got, []float32{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("reshaped view = %v", got)
	}
}

func TestParallelForCoversOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		be := New(threads)
		for _, n := range []int{0, 1, 2, 5, 7, 100} {
			hits := make([]atomic.Int32, n)
			be.parallelFor(n, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					hits[i].Add(1)
				}
			})
			for i := range hits {
				if h := hits[i].Load(); h != 1 {
					t.Fatalf("threads %d, n %d: item %d run %d times", threads, n, i, h)
				}
			}
		}
	}
}

// TestInputsUnchanged runs every op on x and on views sharing its storage (plus small parameter tensors)
// and checks that no input's storage changed: ops must never write into their inputs.
func TestInputsUnchanged(t *testing.T) {
	be := testBackend()
	r := newRand(22)
	x, _ := randTensor(t, be, r, 2, 4, 6)
	w4, _ := randTensor(t, be, r, 4)
	b4, _ := randTensor(t, be, r, 4)
	inputs := []*core.Tensor{x, w4, b4}
	var before [][]float32
	for _, in := range inputs {
		before = append(before, slices.Clone(in.Storage().([]float32)))
	}
	view := func(shape ...int) *core.Tensor { return must(t)(core.Reshape(x, shape...)) }
	x4, g := view(2, 4, 2, 3), view(8, 6) // g: a [B=8, C=6] gate/scale/shift for [8, 1, 6]
	ops := []func() (*core.Tensor, error){
		func() (*core.Tensor, error) { return be.Linear(x, view(8, 6), nil) },
		func() (*core.Tensor, error) { return be.Attention(x, x, x, 2, 0.5, nil) },
		func() (*core.Tensor, error) { return be.LayerNorm(x, 1e-6) },
		func() (*core.Tensor, error) { return be.Modulate(view(8, 1, 6), g, g) },
		func() (*core.Tensor, error) { return be.GroupNorm(x4, 2, w4, b4, 1e-6, true) },
		func() (*core.Tensor, error) { return be.NormalizeHeads(x, 3, nil) },
		func() (*core.Tensor, error) { return be.GELUTanh(x) },
		func() (*core.Tensor, error) { return be.SiLU(x) },
		func() (*core.Tensor, error) { return be.Add(view(8, 6), view(8, 6)) },
		func() (*core.Tensor, error) { return be.AddMulRows(view(8, 1, 6), view(8, 1, 6), g) },
		func() (*core.Tensor, error) { return be.Axpby(2, x, 3, x) },
		func() (*core.Tensor, error) { return be.Clamp(x, -0.1, 0.1) },
		func() (*core.Tensor, error) { return be.SliceLast(x, 1, 3) },
		func() (*core.Tensor, error) { return be.Concat(1, x, x) },
		func() (*core.Tensor, error) { return be.Transpose12(x) },
		func() (*core.Tensor, error) { return be.Conv2d(x4, view(4, 4, 1, 3), b4, 1, [4]int{1, 1, 1, 1}) },
		func() (*core.Tensor, error) { return be.Upsample2x(x4) },
		func() (*core.Tensor, error) { return be.ResizeBicubic(x4, 5, 5) },
		func() (*core.Tensor, error) { return be.ResizeArea(x4, 1, 2) },
		func() (*core.Tensor, error) { return be.Embedding(view(8, 6), []int{3, 1}) },
	}
	for i, op := range ops {
		y, err := op()
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		if out := y.Storage().([]float32); len(out) > 0 && &out[0] == &x.Storage().([]float32)[0] {
			t.Fatalf("op %d returned its input's storage", i)
		}
	}
	if _, err := be.NearestCode(view(8, 6), view(8, 6)); err != nil {
		t.Fatal(err)
	}
	for i, in := range inputs {
		now := in.Storage().([]float32)
		for j := range now {
			if math.Float32bits(now[j]) != math.Float32bits(before[i][j]) {
				t.Fatalf("input %d changed at %d: %v -> %v", i, j, before[i][j], now[j])
			}
		}
	}
}
