package cpu

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
)

// quantize quantizes a [M, K] weight of values w and uploads both the quantized weight and its
// dequantized float twin.
func quantize(t *testing.T, be *Backend, s core.QuantScheme, M, K int, w []float32) (wq, wdq *core.Tensor) {
	t.Helper()
	q, err := core.Quantize(core.HostTensor{Shape: core.Shape{M, K}, Data: w}, s)
	if err != nil {
		t.Fatal(err)
	}
	if wq, err = be.UploadQuant(q); err != nil {
		t.Fatal(err)
	}
	dq, err := q.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	return wq, upload(t, be, dq.Shape, dq.Data)
}

// TestLinearQuantMatchesDequantized: quantized Linear is Linear on the dequantized weight, bit for bit
// (same dot routine, same summation order), over shapes that straddle the 64x48 tiles, the 2x3 register
// blocks and the 32-wide scale blocks. It goes through the public Linear, so it also fails if Linear does
// not dispatch quantized weights (they are not []float32 tensors).
func TestLinearQuantMatchesDequantized(t *testing.T) {
	for name, be := range gemmVariants() {
		t.Run(name, func(t *testing.T) { testLinearQuantMatchesDequantized(t, be) })
	}
}

func testLinearQuantMatchesDequantized(t *testing.T, be *Backend) {
	r := newRand(31)
	cases := []struct {
		x    []int // x shape, last dimension K
		M    int
		bias bool
	}{
		{[]int{1, 1}, 1, false},
		{[]int{7, 17}, 13, true},
		{[]int{65, 33}, 129, false},
		{[]int{65, 33}, 129, true},
		{[]int{2, 37, 70}, 45, true},
		{[]int{3, 1000}, 200, false},
		{[]int{130, 64}, 97, true},
		{[]int{97, 600}, 131, true}, // several packed k blocks and tasks, edge tiles both ways
	}
	for _, s := range []core.QuantScheme{core.QuantInt8, core.QuantInt4} {
		for _, c := range cases {
			K := c.x[len(c.x)-1]
			x, _ := randTensor(t, be, r, c.x...)
			wq, wdq := quantize(t, be, s, c.M, K, randn(r, c.M*K))
			var b *core.Tensor
			if c.bias {
				b, _ = randTensor(t, be, r, c.M)
			}
			got, err := be.Linear(x, wq, b)
			if err != nil {
				t.Fatalf("%v x %v, M %d: %v", s, c.x, c.M, err)
			}
			want := must(t)(be.Linear(x, wdq, b))
			if !got.Shape().Equal(want.Shape()) {
				t.Fatalf("%v: shape %v, want %v", s, got.Shape(), want.Shape())
			}
			g, w := got.Storage().([]float32), want.Storage().([]float32)
			for i := range w {
				if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
					t.Fatalf("%v x %v, M %d: y[%d] = %v, Linear on the dequantized weight gives %v", s, c.x, c.M, i, g[i], w[i])
				}
			}
		}
	}
}

// TestLinearQuantThroughOps: models call Linear through core.Ops with a weight from core.UploadQuant and
// need no change.
func TestLinearQuantThroughOps(t *testing.T) {
	be := testBackend()
	o := core.NewOps(be)
	q, err := core.Quantize(core.HostTensor{Shape: core.Shape{2, 3}, Data: []float32{1, -2, 3, 0.5, 0, -0.25}}, core.QuantInt8)
	if err != nil {
		t.Fatal(err)
	}
	w, err := core.UploadQuant(be, q)
	if err != nil {
		t.Fatal(err)
	}
	y := o.Download(o.Linear(o.Upload(core.HostTensor{Shape: core.Shape{1, 3}, Data: []float32{1, 1, 1}}), w, nil))
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	// Row 0: scale 3/127, codes 42, -85, 127 -> 42*s - 85*s + 127*s = 84*3/127 (about 1.984, not 2).
	// Row 1: scale 0.5/127, codes 127, 0, -64 -> 63*0.5/127.
	want := []float32{float32(42)*(3.0/127) + float32(-85)*(3.0/127) + float32(127)*(3.0/127),
		float32(127)*(0.5/127) + 0 + float32(-64)*(0.5/127)}
	for i := range want {
		if math.Abs(float64(y.Data[i]-want[i])) > 1e-6 {
			t.Fatalf("y = %v, want %v", y.Data, want)
		}
	}
}

func TestUploadQuantCopiesAndValidates(t *testing.T) {
	be := testBackend()
	q, err := core.Quantize(core.HostTensor{Shape: core.Shape{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}}, core.QuantInt4)
	if err != nil {
		t.Fatal(err)
	}
	w, err := be.UploadQuant(q)
	if err != nil {
		t.Fatal(err)
	}
	q.Codes[0], q.Scales[0] = 0, 100 // the tensor must not alias the host slices
	x := upload(t, be, core.Shape{1, 3}, []float32{1, 0, 0})
	if y := download(t, be, must(t)(be.Linear(x, w, nil)), core.Shape{1, 2}); math.Abs(float64(y[0]-1)) > 0.3 {
		t.Fatalf("y = %v: the uploaded weight changed with the host copy", y)
	}

	bad := q
	bad.Scales = bad.Scales[:1]
	_, err = be.UploadQuant(bad)
	var qe *core.QuantError
	if !errors.As(err, &qe) || qe.Field != "scales" {
		t.Fatalf("malformed weight: error %v, want a QuantError on scales", err)
	}
}

// TestLinearQuantErrors: the quantized path rejects what float Linear rejects, plus a view of the weight
// with another shape, and other ops reject quantized tensors instead of panicking.
func TestLinearQuantErrors(t *testing.T) {
	be := testBackend()
	r := newRand(7)
	q, err := core.Quantize(core.HostTensor{Shape: core.Shape{4, 6}, Data: randn(r, 24)}, core.QuantInt8)
	if err != nil {
		t.Fatal(err)
	}
	w := must(t)(be.UploadQuant(q))
	view := must(t)(core.Reshape(w, 6, 4))
	x6, _ := randTensor(t, be, r, 3, 6)
	x4, _ := randTensor(t, be, r, 3, 4)
	b4, _ := randTensor(t, be, r, 4)
	b5, _ := randTensor(t, be, r, 5)
	cases := []struct {
		name, msg string
		shape     bool
		f         func() (*core.Tensor, error)
	}{
		{"K", "want x [..., K]", true, func() (*core.Tensor, error) { return be.Linear(x4, w, nil) }},
		{"view", "quantized as [4, 6]", true, func() (*core.Tensor, error) { return be.Linear(x4, view, nil) }},
		{"bias", "b [5]", true, func() (*core.Tensor, error) { return be.Linear(x6, w, b5) }},
		{"nil x", "x is nil", false, func() (*core.Tensor, error) { return be.Linear(nil, w, b4) }},
		{"quantized x", "not a cpu tensor", false, func() (*core.Tensor, error) { return be.Linear(w, w, nil) }},
		{"quantized bias", "not a cpu tensor", false, func() (*core.Tensor, error) { return be.Linear(x6, w, w) }},
		{"add", "not a cpu tensor", false, func() (*core.Tensor, error) { return be.Add(w, w) }},
	}
	for _, c := range cases {
		y, err := c.f()
		var se *core.ShapeError
		if err == nil || y != nil || !strings.Contains(err.Error(), c.msg) || c.shape != errors.As(err, &se) {
			t.Errorf("%s: got %v, %v; want an error mentioning %q (shape error: %v)", c.name, y, err, c.msg, c.shape)
		}
	}
	if _, err := be.Download(w); err == nil {
		t.Error("Download of a quantized weight succeeded")
	}
	if y, err := be.Linear(x6, w, b4); err != nil || !y.Shape().Equal(core.Shape{3, 4}) {
		t.Errorf("valid call: %v, %v", y, err)
	}
}
