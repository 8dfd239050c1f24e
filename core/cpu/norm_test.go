package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
)

// refNormalize returns (x - mean)/sqrt(var + eps) of v in float64.
func refNormalize(v []float32, eps float64) []float64 {
	var mean, sq float64
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	for _, x := range v {
		sq += (float64(x) - mean) * (float64(x) - mean)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = (float64(x) - mean) / math.Sqrt(sq/float64(len(v))+eps)
	}
	return out
}

func TestGroupNormProperty(t *testing.T) {
	be := testBackend()
	r := newRand(9)
	const B, C, H, W = 2, 6, 3, 5
	for _, groups := range []int{1, 2, C} {
		for _, silu := range []bool{false, true} {
			name := fmt.Sprintf("groups%d_silu%v", groups, silu)
			t.Run(name, func(t *testing.T) {
				x, xv := randTensor(t, be, r, B, C, H, W)
				w, wv := randTensor(t, be, r, C)
				b, bv := randTensor(t, be, r, C)
				cg := C / groups
				want := make([]float64, len(xv))
				for i := range B * groups { // group i covers cg*H*W contiguous values
					n := refNormalize(xv[i*cg*H*W:(i+1)*cg*H*W], 1e-6)
					for j := range n {
						c := (i%groups)*cg + j/(H*W)
						y := n[j]*float64(wv[c]) + float64(bv[c])
						if silu {
							y = y / (1 + math.Exp(-y))
						}
						want[i*cg*H*W+j] = y
					}
				}
				got := download(t, be, must(t)(be.GroupNorm(x, groups, w, b, 1e-6, silu)), core.Shape{B, C, H, W})
				testutil.AbsClose(t, "groupnorm "+name, got, to32(want), 1e-5)
			})
		}
	}
}

// TestLayerNormAffineProperty: LayerNormAffine is refNormalize's row times w plus b (b nil: no bias), and
// LayerNorm is the same op without the affine.
func TestLayerNormAffineProperty(t *testing.T) {
	be := testBackend()
	r := newRand(13)
	const N, C = 4, 37
	x, xv := randTensor(t, be, r, N, C)
	w, wv := randTensor(t, be, r, C)
	b, bv := randTensor(t, be, r, C)
	for _, bias := range []bool{true, false} {
		want := make([]float64, N*C)
		for n := range N {
			for c, y := range refNormalize(xv[n*C:(n+1)*C], 1e-5) {
				want[n*C+c] = y * float64(wv[c])
				if bias {
					want[n*C+c] += float64(bv[c])
				}
			}
		}
		bt := b
		if !bias {
			bt = nil
		}
		got := download(t, be, must(t)(be.LayerNormAffine(x, w, bt, 1e-5)), core.Shape{N, C})
		testutil.AbsClose(t, fmt.Sprintf("layernorm affine bias %v", bias), got, to32(want), 1e-6)
	}
}

func TestLayerNormLargeMean(t *testing.T) {
	// A large offset must not destroy the variance (two-pass float64 statistics).
	be := testBackend()
	v := randn(newRand(10), 3*64)
	for i := range v {
		v[i] = 1000 + v[i]
	}
	got := download(t, be, must(t)(be.LayerNorm(upload(t, be, core.Shape{3, 64}, v), 1e-6)), core.Shape{3, 64})
	var want []float64
	for row := range 3 {
		want = append(want, refNormalize(v[row*64:(row+1)*64], 1e-6)...)
	}
	testutil.AbsClose(t, "layernorm mean 1000", got, to32(want), 1e-4)
}

func TestModulate(t *testing.T) {
	be := testBackend()
	r := newRand(11)
	const B, L, C = 2, 3, 5
	x, xv := randTensor(t, be, r, B, L, C)
	sc, scv := randTensor(t, be, r, B, C)
	sh, shv := randTensor(t, be, r, B, C)
	want := make([]float32, len(xv))
	for i := range want {
		b, c := i/(L*C), i%C
		want[i] = float32(float64(xv[i])*(1+float64(scv[b*C+c])) + float64(shv[b*C+c]))
	}
	got := download(t, be, must(t)(be.Modulate(x, sc, sh)), core.Shape{B, L, C})
	testutil.AbsClose(t, "modulate", got, want, 1e-6)
}

func TestNormalizeHeads(t *testing.T) {
	be := testBackend()
	r := newRand(12)
	const B, L, H, d = 2, 3, 4, 6
	x, xv := randTensor(t, be, r, B, L, H*d)
	copy(xv[d:2*d], make([]float32, d)) // head 1 of the first row is zero: the eps path must give zeros
	x = upload(t, be, core.Shape{B, L, H * d}, xv)
	scale := []float32{1, 2.5, 0.5, 30}
	for _, withScale := range []bool{false, true} {
		want := make([]float64, len(xv))
		for i := range B * L * H {
			var sq float64
			for _, v := range xv[i*d : (i+1)*d] {
				sq += float64(v) * float64(v)
			}
			for j := range d {
				want[i*d+j] = float64(xv[i*d+j]) / math.Max(math.Sqrt(sq), 1e-12)
				if withScale {
					want[i*d+j] *= float64(scale[i%H])
				}
			}
		}
		var s *core.Tensor
		if withScale {
			s = upload(t, be, core.Shape{H}, scale)
		}
		got := download(t, be, must(t)(be.NormalizeHeads(x, H, s)), core.Shape{B, L, H * d})
		testutil.AbsClose(t, fmt.Sprintf("normalize heads scale=%v", withScale), got, to32(want), 1e-5)
	}
}
