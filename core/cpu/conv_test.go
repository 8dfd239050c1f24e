package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
)

// refConv2d is the naive 7-loop convolution in float64, reading zero outside the input.
func refConv2d(x, w, b []float32, B, Ci, H, W, Co, kh, kw, stride int, pad [4]int) ([]float64, int, int) {
	Ho := (H+pad[0]+pad[2]-kh)/stride + 1
	Wo := (W+pad[1]+pad[3]-kw)/stride + 1
	out := make([]float64, B*Co*Ho*Wo)
	for n := range B {
		for o := range Co {
			for i := range Ho {
				for j := range Wo {
					var s float64
					if b != nil {
						s = float64(b[o])
					}
					for c := range Ci {
						for u := range kh {
							for v := range kw {
								y, x0 := i*stride-pad[0]+u, j*stride-pad[1]+v
								if y < 0 || y >= H || x0 < 0 || x0 >= W {
									continue
								}
								s += float64(w[((o*Ci+c)*kh+u)*kw+v]) * float64(x[((n*Ci+c)*H+y)*W+x0])
							}
						}
					}
					out[((n*Co+o)*Ho+i)*Wo+j] = s
				}
			}
		}
	}
	return out, Ho, Wo
}

func TestConv2dProperty(t *testing.T) {
	for name, be := range gemmVariants() {
		t.Run(name, func(t *testing.T) { testConv2dProperty(t, be) })
	}
}

func testConv2dProperty(t *testing.T, be *Backend) {
	r := newRand(6)
	type conv struct {
		B, Ci, H, W, Co, k, stride int
		pad                        [4]int
		bias                       bool
	}
	cases := []conv{
		{1, 3, 7, 9, 5, 1, 1, [4]int{}, true},
		{2, 4, 7, 9, 5, 3, 1, [4]int{1, 1, 1, 1}, true},
		{1, 4, 7, 9, 6, 3, 2, [4]int{0, 0, 1, 1}, false}, // VAE Downsample2x: pad right/bottom, stride 2
		{2, 3, 8, 5, 7, 3, 2, [4]int{1, 1, 1, 1}, true},
		{1, 5, 6, 6, 3, 1, 2, [4]int{}, true},
		{1, 2, 5, 4, 3, 3, 1, [4]int{2, 0, 0, 1}, true}, // asymmetric, more padding than the kernel needs
		{1, 33, 11, 13, 50, 3, 1, [4]int{1, 1, 1, 1}, true},
		// Rows of 37 output pixels: the packed path's contiguous runs, clipped at both image edges, next
		// to panels that straddle two rows; Ci*9 = 315 spans two k blocks, the split inside a 3x3 window.
		{1, 35, 6, 37, 9, 3, 1, [4]int{1, 1, 1, 1}, true},
		{2, 3, 5, 40, 7, 3, 1, [4]int{2, 0, 0, 1}, false},
	}
	for _, c := range cases {
		name := fmt.Sprintf("B%d_Ci%d_%dx%d_Co%d_k%d_s%d_pad%v", c.B, c.Ci, c.H, c.W, c.Co, c.k, c.stride, c.pad)
		t.Run(name, func(t *testing.T) {
			x, xv := randTensor(t, be, r, c.B, c.Ci, c.H, c.W)
			w, wv := randTensor(t, be, r, c.Co, c.Ci, c.k, c.k)
			var b *core.Tensor
			var bv []float32
			if c.bias {
				b, bv = randTensor(t, be, r, c.Co)
			}
			want, Ho, Wo := refConv2d(xv, wv, bv, c.B, c.Ci, c.H, c.W, c.Co, c.k, c.k, c.stride, c.pad)
			poisonScratch()
			got := download(t, be, must(t)(be.Conv2d(x, w, b, c.stride, c.pad)), core.Shape{c.B, c.Co, Ho, Wo})
			testutil.AbsClose(t, "conv2d "+name, got, to32(want), 1e-4)
		})
	}
	t.Run("chunked im2col", func(t *testing.T) {
		// Ci*kh*kw = 2304 and 48x48 pixels: the patch matrix spans two chunks of convChunkFloats.
		x, xv := randTensor(t, be, r, 1, 256, 48, 48)
		w, wv := randTensor(t, be, r, 2, 256, 3, 3)
		want, Ho, Wo := refConv2d(xv, wv, nil, 1, 256, 48, 48, 2, 3, 3, 1, [4]int{1, 1, 1, 1})
		if 48*48*256*9 <= convChunkFloats {
			t.Fatal("case no longer spans several chunks")
		}
		got := download(t, be, must(t)(be.Conv2d(x, w, nil, 1, [4]int{1, 1, 1, 1})), core.Shape{1, 2, Ho, Wo})
		testutil.RelClose(t, "conv2d chunked", got, to32(want), 1e-5)
	})
}

// TestIm2colPackBlock: bIm2col's block packer writes exactly the panels packPanel writes one by one, for
// column ranges that start and end inside output rows, rows narrower and wider than a panel, padding on
// every side, kernel rows split between k blocks, and stride 2 (panel by panel inside packBlock).
func TestIm2colPackBlock(t *testing.T) {
	r := newRand(17)
	for _, c := range []struct {
		Ci, H, W, k, stride int
		pad                 [4]int
	}{
		{3, 5, 40, 3, 1, [4]int{1, 1, 1, 1}}, {2, 4, 37, 3, 1, [4]int{0, 2, 1, 0}}, {35, 6, 64, 3, 1, [4]int{1, 1, 1, 1}},
		{4, 3, 9, 3, 1, [4]int{1, 1, 1, 1}}, {2, 7, 33, 1, 1, [4]int{}}, {3, 9, 40, 3, 2, [4]int{0, 0, 1, 1}},
	} {
		x := randn(r, c.Ci*c.H*c.W)
		Ho := (c.H+c.pad[0]+c.pad[2]-c.k)/c.stride + 1
		Wo := (c.W+c.pad[1]+c.pad[3]-c.k)/c.stride + 1
		b := bIm2col{x_CHW: x, H: c.H, W: c.W, kh: c.k, kw: c.k, stride: c.stride, top: c.pad[0], left: c.pad[1], Wo: Wo}
		K, P := c.Ci*c.k*c.k, Ho*Wo
		for _, jr := range [][2]int{{0, P}, {5, P - 3}, {Wo - 7, min(P, 3*Wo+20)}, {16, 48}} {
			j0, j1 := jr[0], jr[1]
			if j0 < 0 || j1 <= j0 {
				continue
			}
			for k0 := 0; k0 < K; k0 += 10 {
				k1 := min(k0+gemmKC, K)
				kc, n := k1-k0, (j1-j0+gemmNR-1)/gemmNR*gemmNR
				got, want := make([]float32, n*kc), make([]float32, n*kc)
				for i := range got {
					got[i] = float32(math.NaN()) // every value must be written
				}
				b.packBlock(got, j0, j1, k0, k1)
				for jp := j0; jp < j1; jp += gemmNR {
					b.packPanel(want[(jp-j0)*kc:(jp-j0+gemmNR)*kc], jp, min(gemmNR, j1-jp), k0, k1)
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%+v, columns [%d, %d), k [%d, %d): value %d = %v, packPanel %v", c, j0, j1, k0, k1, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestConv2dAdd: Conv2dAdd equals Add(res, Conv2d(...)) bit for bit on every matrix-product variant (the
// packed path adds bias and res per block of columns, the reference in whole passes), with and without a
// bias, over several images and output blocks; it rejects a res of another shape.
func TestConv2dAdd(t *testing.T) {
	r := newRand(16)
	for name, be := range gemmVariants() {
		for _, c := range []struct {
			B, Ci, H, W, Co, k int
			bias               bool
		}{{2, 5, 9, 70, 7, 3, true}, {1, 4, 6, 6, 3, 1, false}, {1, 33, 40, 40, 13, 3, true}} {
			t.Run(fmt.Sprintf("%s/B%d_Ci%d_%dx%d_Co%d_k%d_bias%v", name, c.B, c.Ci, c.H, c.W, c.Co, c.k, c.bias), func(t *testing.T) {
				pad := [4]int{c.k / 2, c.k / 2, c.k / 2, c.k / 2}
				x, _ := randTensor(t, be, r, c.B, c.Ci, c.H, c.W)
				w, _ := randTensor(t, be, r, c.Co, c.Ci, c.k, c.k)
				var b *core.Tensor
				if c.bias {
					b, _ = randTensor(t, be, r, c.Co)
				}
				res, _ := randTensor(t, be, r, c.B, c.Co, c.H, c.W)
				shape := core.Shape{c.B, c.Co, c.H, c.W}
				got := download(t, be, must(t)(be.Conv2dAdd(x, w, b, 1, pad, res)), shape)
				want := download(t, be, must(t)(be.Add(res, must(t)(be.Conv2d(x, w, b, 1, pad)))), shape)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("out[%d] = %v, Add(res, Conv2d) %v", i, got[i], want[i])
					}
				}
				bad, _ := randTensor(t, be, r, c.B, c.Co, c.H, c.W+1)
				if _, err := be.Conv2dAdd(x, w, b, 1, pad, bad); err == nil {
					t.Fatal("res of the wrong shape accepted")
				}
			})
		}
	}
}

// BenchmarkConv3x3 is 3x3 convolutions as in the VAE decoder: 128 -> 128 channels on a 64x64 map, and
// VAR-d16's largest, 160 -> 160 channels at 256x256 (7 of them, over half the decode's FLOPs).
func BenchmarkConv3x3(b *testing.B) {
	for _, s := range []struct{ C, H, W int }{{128, 64, 64}, {160, 256, 256}} {
		b.Run(fmt.Sprintf("%dx%dx%d", s.C, s.H, s.W), func(b *testing.B) {
			be := New(0)
			r := newRand(7)
			x, _ := randTensor(b, be, r, 1, s.C, s.H, s.W)
			w, _ := randTensor(b, be, r, s.C, s.C, 3, 3)
			bias, _ := randTensor(b, be, r, s.C)
			for b.Loop() {
				if _, err := be.Conv2d(x, w, bias, 1, [4]int{1, 1, 1, 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*float64(s.C*s.C*9*s.H*s.W)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
