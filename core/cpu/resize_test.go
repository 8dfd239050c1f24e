package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
)

// keys is Keys' cubic convolution kernel with A = -0.75 at distance x, written from its textbook definition.
func keys(x float64) float64 {
	const A = -0.75
	x = math.Abs(x)
	switch {
	case x <= 1:
		return (A+2)*x*x*x - (A+3)*x*x + 1
	case x < 2:
		return A*x*x*x - 5*A*x*x + 8*A*x - 4*A
	}
	return 0
}

// refBicubic is a per-pixel float64 implementation of PyTorch's bicubic resize (align_corners=False): output
// pixel (i, j) is the sum over the 4x4 input pixels around its source position, each weighted by keys of its
// distance along each axis, with out-of-range pixels replaced by the nearest border pixel.
func refBicubic(x []float32, planes, H, W, outH, outW int) []float64 {
	out := make([]float64, planes*outH*outW)
	clamp := func(i, n int) int { return min(max(i, 0), n-1) }
	for p := range planes {
		for i := range outH {
			sy := (float64(i)+0.5)*float64(H)/float64(outH) - 0.5
			fy := math.Floor(sy)
			for j := range outW {
				sx := (float64(j)+0.5)*float64(W)/float64(outW) - 0.5
				fx := math.Floor(sx)
				var sum float64
				for m := fy - 1; m <= fy+2; m++ {
					for n := fx - 1; n <= fx+2; n++ {
						v := x[(p*H+clamp(int(m), H))*W+clamp(int(n), W)]
						sum += keys(sy-m) * keys(sx-n) * float64(v)
					}
				}
				out[(p*outH+i)*outW+j] = sum
			}
		}
	}
	return out
}

func TestResizeBicubicProperty(t *testing.T) {
	be := testBackend()
	r := newRand(1)
	cases := []struct{ H, W, outH, outW int }{
		{1, 1, 16, 16}, {2, 2, 16, 16}, {5, 5, 16, 16}, {13, 13, 16, 16}, {16, 16, 16, 16},
		{3, 3, 7, 7}, {16, 16, 13, 13}, {16, 16, 3, 3},
		{3, 5, 7, 4}, {1, 4, 6, 9}, {13, 16, 16, 13}, // non-square, H != W, mixed up/down
	}
	for _, c := range cases {
		name := fmt.Sprintf("%dx%d->%dx%d", c.H, c.W, c.outH, c.outW)
		t.Run(name, func(t *testing.T) {
			const B, C = 2, 3
			x, xv := randTensor(t, be, r, B, C, c.H, c.W)
			got := download(t, be, must(t)(be.ResizeBicubic(x, c.outH, c.outW)), core.Shape{B, C, c.outH, c.outW})
			want := refBicubic(xv, B*C, c.H, c.W, c.outH, c.outW)
			testutil.AbsClose(t, "bicubic "+name, got, to32(want), 1e-5)
		})
	}
	t.Run("1x1 is constant", func(t *testing.T) {
		x := upload(t, be, core.Shape{1, 1, 1, 1}, []float32{0.7})
		for _, v := range download(t, be, must(t)(be.ResizeBicubic(x, 5, 3)), core.Shape{1, 1, 5, 3}) {
			if math.Abs(float64(v)-0.7) > 1e-6 {
				t.Fatalf("1x1 upsampled to %v, want 0.7 everywhere", v)
			}
		}
	})
	t.Run("same size is identity", func(t *testing.T) {
		x, xv := randTensor(t, be, r, 1, 2, 4, 5)
		got := download(t, be, must(t)(be.ResizeBicubic(x, 4, 5)), core.Shape{1, 2, 4, 5})
		testutil.AbsClose(t, "bicubic identity", got, xv, 0)
	})
}

// refArea is adaptive average pooling in float64 with windows from floating-point floor and ceil.
func refArea(x []float32, planes, H, W, outH, outW int) []float64 {
	window := func(i, in, out int) (int, int) {
		return int(math.Floor(float64(i*in) / float64(out))), int(math.Ceil(float64((i+1)*in) / float64(out)))
	}
	out := make([]float64, planes*outH*outW)
	for p := range planes {
		for i := range outH {
			y0, y1 := window(i, H, outH)
			for j := range outW {
				x0, x1 := window(j, W, outW)
				var sum float64
				for yy := y0; yy < y1; yy++ {
					for xx := x0; xx < x1; xx++ {
						sum += float64(x[(p*H+yy)*W+xx])
					}
				}
				out[(p*outH+i)*outW+j] = sum / float64((y1-y0)*(x1-x0))
			}
		}
	}
	return out
}

func TestResizeAreaProperty(t *testing.T) {
	be := testBackend()
	r := newRand(2)
	cases := []struct{ H, W, outH, outW int }{
		{16, 16, 13, 13}, {16, 16, 10, 10}, {7, 7, 3, 3}, {3, 3, 7, 7}, {13, 13, 16, 16},
		{16, 16, 1, 1}, {5, 5, 5, 5}, {16, 7, 13, 3}, {3, 13, 7, 16},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%dx%d->%dx%d", c.H, c.W, c.outH, c.outW)
		t.Run(name, func(t *testing.T) {
			const B, C = 2, 3
			x, xv := randTensor(t, be, r, B, C, c.H, c.W)
			got := download(t, be, must(t)(be.ResizeArea(x, c.outH, c.outW)), core.Shape{B, C, c.outH, c.outW})
			testutil.AbsClose(t, "area "+name, got, to32(refArea(xv, B*C, c.H, c.W, c.outH, c.outW)), 1e-5)
		})
	}
	t.Run("16->13 windows overlap", func(t *testing.T) {
		for i, want := range [][2]int{{0, 2}, {1, 3}, {2, 4}} {
			if s, e := areaWindow(i, 16, 13); s != want[0] || e != want[1] {
				t.Errorf("window %d = [%d, %d), want [%d, %d)", i, s, e, want[0], want[1])
			}
		}
	})
}

func TestUpsample2x(t *testing.T) {
	be := testBackend()
	x, xv := randTensor(t, be, newRand(3), 2, 3, 3, 5)
	got := download(t, be, must(t)(be.Upsample2x(x)), core.Shape{2, 3, 6, 10})
	for p := range 6 {
		for i := range 6 {
			for j := range 10 {
				if g, w := got[(p*6+i)*10+j], xv[(p*3+i/2)*5+j/2]; g != w {
					t.Fatalf("plane %d (%d, %d) = %v, want %v", p, i, j, g, w)
				}
			}
		}
	}
}
