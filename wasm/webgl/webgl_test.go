//go:build js

package webgl

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
)

// These tests run in a browser (internal/browsertest builds them for GOOS=js and runs them in headless
// Chromium, whose WebGL2 is SwiftShader without a GPU). Each product is compared with the plain-Go
// reference Linear, the specification.

func open(t *testing.T) *Offload {
	t.Helper()
	o, err := Open()
	if errors.Is(err, ErrUnavailable) {
		t.Fatalf("this browser has no usable WebGL2: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("WEBGL renderer: %s, max texture %d", o.Renderer(), o.maxTex)
	return o
}

func randTensor(t *testing.T, b core.Backend, r *rand.Rand, dims ...int) *core.Tensor {
	t.Helper()
	s := core.Shape(dims)
	h := core.HostTensor{Shape: s, Data: make([]float32, s.Numel())}
	for i := range h.Data {
		h.Data[i] = float32(r.NormFloat64())
	}
	x, err := b.Upload(h)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// compare checks got against want elementwise within tol times the sum of |x||w| behind each output
// (the scale of float rounding in a dot product), given per output by bound.
func compare(t *testing.T, what string, got, want, bound []float32, tol float64) {
	t.Helper()
	worst := 0.0
	for i := range want {
		d := math.Abs(float64(got[i]-want[i])) / max(float64(bound[i]), 1e-30)
		worst = max(worst, d)
		if d > tol || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s: y[%d] = %g, reference %g (error %.2g of sum |x||w|, want <= %.2g)", what, i, got[i], want[i], d, tol)
		}
	}
	t.Logf("OP %s: worst error %.2g of sum |x||w|", what, worst)
}

func read(t *testing.T, b core.Backend, x *core.Tensor) []float32 {
	t.Helper()
	h, err := b.Download(x)
	if err != nil {
		t.Fatal(err)
	}
	return h.Data
}

// absBound is sum_k |x[n,k]| |w[m,k]| for each output.
func absBound(x, w []float32, N, M, K int) []float32 {
	b := make([]float32, N*M)
	for n := range N {
		for m := range M {
			s := 0.0
			for k := range K {
				s += math.Abs(float64(x[n*K+k]) * float64(w[m*K+k]))
			}
			b[n*M+m] = float32(s)
		}
	}
	return b
}

func TestLinearMatchesReference(t *testing.T) {
	o := open(t)
	ref := cpu.NewReference(1)
	gl := ref.WithOffload(o)
	if got := gl.Name(); got != "cpu-ref+webgl2" {
		t.Errorf("backend name %q, want cpu-ref+webgl2", got)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ N, M, K int }{
		{64, 256, 128}, // multiples of 4
		{37, 130, 67},  // K and M padded to 4
		{1, 1024, 1024},
		{300, 6, 513},
	} {
		x := randTensor(t, ref, r, c.N, c.K)
		w := randTensor(t, ref, r, c.M, c.K)
		bias := randTensor(t, ref, r, c.M)
		want, err := ref.Linear(x, w, bias)
		if err != nil {
			t.Fatal(err)
		}
		// Twice: the second call takes the cached weight texture.
		for range 2 {
			got, err := gl.Linear(x, w, bias)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, "linear", read(t, ref, got), read(t, ref, want), absBound(read(t, ref, x), read(t, ref, w), c.N, c.M, c.K), 1e-5)
		}
	}
	if o.WeightBytes() == 0 {
		t.Error("no weight textures were uploaded: the products did not run on WebGL2")
	}
}

// A quantized weight is uploaded as float16 values of its dequantized codes: within half's rounding of
// the CPU's product on the same codes.
func TestQuantizedLinear(t *testing.T) {
	o := open(t)
	ref := cpu.NewReference(1)
	gl := ref.WithOffload(o)
	r := rand.New(rand.NewPCG(3, 4))
	const N, M, K = 21, 96, 160
	x := randTensor(t, ref, r, N, K)
	wf := randTensor(t, ref, r, M, K)
	for _, scheme := range []core.QuantScheme{core.QuantInt8, core.QuantInt4} {
		q, err := core.Quantize(core.HostTensor{Shape: core.Shape{M, K}, Data: read(t, ref, wf)}, scheme)
		if err != nil {
			t.Fatal(err)
		}
		w, err := ref.UploadQuant(q)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Linear(x, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := gl.Linear(x, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		dq, err := q.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		compare(t, "linear-quant", read(t, ref, got), read(t, ref, want), absBound(read(t, ref, x), dq.Data, N, M, K), 1e-3)
	}
}

// Products too small to be worth a round trip stay on the CPU, bit for bit.
func TestSmallProductsStayOnTheCPU(t *testing.T) {
	o := open(t)
	ref := cpu.NewReference(1)
	r := rand.New(rand.NewPCG(5, 6))
	x := randTensor(t, ref, r, 2, 16)
	w := randTensor(t, ref, r, 8, 16)
	y := make([]float32, 2*8)
	done, err := o.LinearNT(w, func() ([]float32, bool, error) { return read(t, ref, w), false, nil }, read(t, ref, x), 2, 8, 16, y)
	if err != nil || done {
		t.Fatalf("a 2x8x16 product: done %v, error %v; want it left to the CPU", done, err)
	}
}

// Convolutions (the VQVAE decoder's 3x3 and 1x1, the encoder's strided one with asymmetric padding),
// channel counts that are and are not multiples of 4, against the reference Conv2d. Each is large enough
// (MinMACs) to be offloaded.
func TestConv2dMatchesReference(t *testing.T) {
	o := open(t)
	ref := cpu.NewReference(1)
	gl := ref.WithOffload(o)
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		B, Ci, H, W, Co, k, stride int
		pad                        [4]int
	}{
		{1, 32, 16, 16, 32, 3, 1, [4]int{1, 1, 1, 1}},
		{1, 5, 29, 23, 6, 3, 1, [4]int{1, 1, 1, 1}},
		{2, 8, 24, 24, 12, 1, 1, [4]int{}},
		{1, 16, 24, 20, 8, 3, 2, [4]int{0, 0, 1, 1}},
	} {
		x := randTensor(t, ref, r, c.B, c.Ci, c.H, c.W)
		w := randTensor(t, ref, r, c.Co, c.Ci, c.k, c.k)
		bias := randTensor(t, ref, r, c.Co)
		want, err := ref.Conv2d(x, w, bias, c.stride, c.pad)
		if err != nil {
			t.Fatal(err)
		}
		before := o.WeightBytes()
		got, err := gl.Conv2d(x, w, bias, c.stride, c.pad)
		if err != nil {
			t.Fatal(err)
		}
		if o.WeightBytes() == before {
			t.Fatalf("conv %+v did not run on WebGL2 (no weight texture uploaded)", c)
		}
		if !got.Shape().Equal(want.Shape()) {
			t.Fatalf("conv %+v: shape %v, want %v", c, got.Shape(), want.Shape())
		}
		// The bound per output: sum of |w| over the kernel times the largest |x| (inputs are N(0, 1)).
		wd, xd := read(t, ref, w), read(t, ref, x)
		xmax := 0.0
		for _, v := range xd {
			xmax = max(xmax, math.Abs(float64(v)))
		}
		K := c.Ci * c.k * c.k
		wantD := read(t, ref, want)
		P := len(wantD) / (c.B * c.Co)
		bound := make([]float32, len(wantD))
		for i := range bound {
			oc := i / P % c.Co
			s := 0.0
			for _, v := range wd[oc*K : (oc+1)*K] {
				s += math.Abs(float64(v))
			}
			bound[i] = float32(s * xmax)
		}
		compare(t, "conv2d", read(t, ref, got), wantD, bound, 1e-5)
	}
}
