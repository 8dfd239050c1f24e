package cpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
)

// recordingOffload computes the product in float64 and records what Linear handed it. The real
// offload (wasm/webgl) is tested in Chromium against the reference; this checks Linear's side of the
// contract: the operands, the bias added afterwards, quantized weights dequantized, errors passed on.
type recordingOffload struct {
	calls     int
	quantized bool
	decline   bool
	fail      error
}

func (r *recordingOffload) Name() string { return "test" }

func (r *recordingOffload) LinearNT(w *core.Tensor, weight func() ([]float32, bool, error), x_NK []float32, N, M, K int, y_NM []float32) (bool, error) {
	if r.fail != nil {
		return false, r.fail
	}
	if r.decline {
		return false, nil
	}
	w_MK, q, err := weight()
	if err != nil {
		return false, err
	}
	r.calls++
	r.quantized = q
	for n := range N {
		for m := range M {
			s := 0.0
			for k := range K {
				s += float64(x_NK[n*K+k]) * float64(w_MK[m*K+k])
			}
			y_NM[n*M+m] = float32(s)
		}
	}
	return true, nil
}

func TestLinearOffload(t *testing.T) {
	ref := NewReference(1)
	h := func(s core.Shape, f func(i int) float32) *core.Tensor {
		d := make([]float32, s.Numel())
		for i := range d {
			d[i] = f(i)
		}
		x, err := ref.Upload(core.HostTensor{Shape: s, Data: d})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	x := h(core.Shape{2, 3, 8}, func(i int) float32 { return float32(i%7) - 3 })
	wh := core.HostTensor{Shape: core.Shape{5, 8}, Data: make([]float32, 40)}
	for i := range wh.Data {
		wh.Data[i] = float32(i%5) * 0.25
	}
	w, _ := ref.Upload(wh)
	b := h(core.Shape{5}, func(i int) float32 { return float32(i) })
	want, err := ref.Linear(x, w, b)
	if err != nil {
		t.Fatal(err)
	}
	wantH, _ := ref.Download(want)

	o := &recordingOffload{}
	be := ref.WithOffload(o)
	if be.Name() != "cpu-ref+test" || ref.Name() != "cpu-ref" {
		t.Errorf("names %q and %q, want cpu-ref+test and the original's cpu-ref unchanged", be.Name(), ref.Name())
	}
	got, err := be.Linear(x, w, b)
	if err != nil {
		t.Fatal(err)
	}
	gotH, _ := be.Download(got)
	if o.calls != 1 || o.quantized || !got.Shape().Equal(want.Shape()) {
		t.Fatalf("calls %d quantized %v shape %v; want one float call with shape %v", o.calls, o.quantized, got.Shape(), want.Shape())
	}
	for i := range wantH.Data {
		if gotH.Data[i] != wantH.Data[i] { // small integers and quarters: exact either way
			t.Fatalf("y[%d] = %g through the offload, %g on the CPU", i, gotH.Data[i], wantH.Data[i])
		}
	}

	q, err := core.Quantize(wh, core.QuantInt8)
	if err != nil {
		t.Fatal(err)
	}
	wq, err := ref.UploadQuant(q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := be.Linear(x, wq, nil); err != nil || !o.quantized {
		t.Fatalf("quantized weight: error %v, offload told quantized %v", err, o.quantized)
	}

	o.decline = true
	if _, err := be.Linear(x, w, b); err != nil || o.calls != 2 {
		t.Fatalf("declined product: error %v, calls %d; want the CPU to compute it", err, o.calls)
	}
	o.fail = errors.New("context lost")
	if _, err := be.Linear(x, w, b); err == nil || !strings.Contains(err.Error(), "linear on test: context lost") {
		t.Fatalf("offload failure: error %v, want it named and passed on", err)
	}
}

// convOffload adds a Conv2d to recordingOffload that computes with the reference code.
type convOffload struct {
	recordingOffload
	convs int
	geom  ConvGeom
}

func (c *convOffload) Conv2d(w *core.Tensor, w_OCUV []float32, x_BCHW []float32, g ConvGeom, y_BOP []float32) (bool, error) {
	if c.fail != nil {
		return false, c.fail
	}
	if c.decline {
		return false, nil
	}
	c.convs++
	c.geom = g
	NewReference(1).conv2dRef(x_BCHW, w_OCUV, y_BOP, g.B, g.Ci, g.H, g.W, g.Co, g.KH, g.KW, g.Stride, g.Top, g.Left, g.Ho, g.Wo)
	return true, nil
}

func TestConv2dOffload(t *testing.T) {
	ref := NewReference(1)
	up := func(s core.Shape) *core.Tensor {
		d := make([]float32, s.Numel())
		for i := range d {
			d[i] = float32(i%11) - 5
		}
		x, err := ref.Upload(core.HostTensor{Shape: s, Data: d})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	x, w, b := up(core.Shape{1, 3, 6, 5}), up(core.Shape{4, 3, 3, 3}), up(core.Shape{4})
	pad := [4]int{0, 0, 1, 1}
	want, err := ref.Conv2d(x, w, b, 2, pad)
	if err != nil {
		t.Fatal(err)
	}
	wantH, _ := ref.Download(want)
	o := &convOffload{}
	be := ref.WithOffload(o)
	got, err := be.Conv2d(x, w, b, 2, pad)
	if err != nil {
		t.Fatal(err)
	}
	gotH, _ := be.Download(got)
	wantGeom := ConvGeom{B: 1, Ci: 3, H: 6, W: 5, Co: 4, KH: 3, KW: 3, Stride: 2, Top: 0, Left: 0, Ho: 3, Wo: 2}
	if o.convs != 1 || o.geom != wantGeom {
		t.Fatalf("%d offloaded convs with %+v; want one with %+v", o.convs, o.geom, wantGeom)
	}
	for i := range wantH.Data {
		if gotH.Data[i] != wantH.Data[i] { // the bias is added by the CPU after the offloaded sum
			t.Fatalf("y[%d] = %g through the offload, %g on the CPU", i, gotH.Data[i], wantH.Data[i])
		}
	}
	o.fail = errors.New("out of memory")
	if _, err := be.Conv2d(x, w, b, 2, pad); err == nil || !strings.Contains(err.Error(), "conv2d on test: out of memory") {
		t.Fatalf("offload failure: error %v, want it named and passed on", err)
	}
}
