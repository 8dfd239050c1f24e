package cpu

import (
	"math"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
)

func TestSiLUExtremes(t *testing.T) {
	be := testBackend()
	in := []float32{-1e30, -1000, -100, -20, 0, 20, 100, 1000, 1e30, float32(math.Inf(1))}
	got := download(t, be, must(t)(be.SiLU(upload(t, be, core.Shape{len(in)}, in))), core.Shape{len(in)})
	for i, x := range in {
		y := got[i]
		if math.IsNaN(float64(y)) {
			t.Fatalf("silu(%v) = NaN", x)
		}
		if x >= 20 && y != x {
			t.Errorf("silu(%v) = %v, want x", x, y)
		}
		if x <= -100 && (y > 0 || y < -1e-30) {
			t.Errorf("silu(%v) = %v, want a tiny non-positive value", x, y)
		}
	}
}

func TestGELUTanhLarge(t *testing.T) {
	be := testBackend()
	in := []float32{-1e4, -30, 30, 1e4}
	want := []float32{0, 0, 30, 1e4}
	got := download(t, be, must(t)(be.GELUTanh(upload(t, be, core.Shape{4}, in))), core.Shape{4})
	testutil.AbsClose(t, "gelu large", got, want, 1e-6)
}

// TestGELUValues: the exact GELU is x*Phi(x), checked at tabulated values of the normal CDF Phi, on the
// reference and on New's float32 path.
func TestGELUValues(t *testing.T) {
	in := []float32{-3, -1, 0, 1, 2}
	phi := []float64{0.0013498980316300946, 0.15865525393145707, 0.5, 0.8413447460685429, 0.9772498680518208}
	want := make([]float32, len(in))
	for i, x := range in {
		want[i] = float32(float64(x) * phi[i])
	}
	for _, be := range []*Backend{NewReference(1), New(1)} {
		got := download(t, be, must(t)(be.GELU(upload(t, be, core.Shape{len(in)}, in))), core.Shape{len(in)})
		testutil.AbsClose(t, "gelu-erf "+be.Name(), got, want, 2e-7)
	}
}

func TestAddBroadcast(t *testing.T) {
	be := testBackend()
	r := newRand(16)
	a, av := randTensor(t, be, r, 2, 3, 4)
	for _, bs := range []core.Shape{{2, 3, 4}, {3, 4}, {4}, {}} {
		b, bv := randTensor(t, be, r, bs...)
		want := make([]float32, len(av))
		for i := range av {
			want[i] = av[i] + bv[i%len(bv)]
		}
		got := download(t, be, must(t)(be.Add(a, b)), core.Shape{2, 3, 4})
		testutil.AbsClose(t, "add "+bs.String(), got, want, 0)
	}
}

func TestAddMulRowsAxpbyClamp(t *testing.T) {
	be := testBackend()
	r := newRand(17)
	const B, L, C = 2, 3, 4
	x, xv := randTensor(t, be, r, B, L, C)
	y, yv := randTensor(t, be, r, B, L, C)
	g, gv := randTensor(t, be, r, B, C)

	want := make([]float32, len(xv))
	for i := range want {
		want[i] = xv[i] + yv[i]*gv[(i/(L*C))*C+i%C]
	}
	testutil.AbsClose(t, "addmulrows", download(t, be, must(t)(be.AddMulRows(x, y, g)), core.Shape{B, L, C}), want, 0)

	for i := range want {
		want[i] = 0.5*xv[i] - 2*yv[i]
	}
	testutil.AbsClose(t, "axpby", download(t, be, must(t)(be.Axpby(0.5, x, -2, y)), core.Shape{B, L, C}), want, 0)

	for i := range want {
		want[i] = min(max(xv[i], -0.5), 0.25)
	}
	testutil.AbsClose(t, "clamp", download(t, be, must(t)(be.Clamp(x, -0.5, 0.25)), core.Shape{B, L, C}), want, 0)

	nan := float32(math.NaN())
	got := download(t, be, must(t)(be.Clamp(upload(t, be, core.Shape{1}, []float32{nan}), -1, 1)), core.Shape{1})
	if !math.IsNaN(float64(got[0])) {
		t.Errorf("clamp(NaN) = %v, want NaN", got[0])
	}
}

func TestLargeElementwiseIsParallelAndComplete(t *testing.T) {
	// More than one elemBlock per worker, with a ragged tail.
	be := testBackend()
	n := 5*elemBlock + 123
	x, xv := randTensor(t, be, newRand(18), n)
	got := download(t, be, must(t)(be.Axpby(1, x, 0, x)), core.Shape{n})
	testutil.AbsClose(t, "axpby large", got, xv, 0)
}
