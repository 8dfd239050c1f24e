package webgpu

import (
	"errors"
	"math"
	"math/rand"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/backendtest"
	"github.com/webvar/webvar/core/cpu"
)

// TestConv2dDecoderShape checks a VQVAE-decoder-like layer (several K steps per kernel offset, full
// tiles and ragged ones) against the CPU reference.
func TestConv2dDecoderShape(t *testing.T) {
	b := newTestBackend(t)
	r := rand.New(rand.NewSource(7))
	x := backendtest.Randn(r, 0, 1, 1, 96, 37, 41)
	w := backendtest.Randn(r, 0, 0.05, 130, 96, 3, 3)
	bias := backendtest.Randn(r, 0, 0.5, 130)
	run := func(be core.Backend) core.HostTensor {
		o := core.NewOps(be)
		y := o.Download(o.Conv2d(o.Upload(x), o.Upload(w), o.Upload(bias), 1, [4]int{1, 1, 1, 1}))
		if err := o.Err(); err != nil {
			t.Fatalf("%s: %v", be.Name(), err)
		}
		return y
	}
	want, got := run(cpu.New(0)), run(b)
	maxErr, maxRef := 0.0, 0.0
	for i := range want.Data {
		maxErr = math.Max(maxErr, math.Abs(float64(got.Data[i]-want.Data[i])))
		maxRef = math.Max(maxRef, math.Abs(float64(want.Data[i])))
	}
	if norm := maxErr / math.Max(1, maxRef); norm > 1e-4 {
		t.Fatalf("normalised error %.3g", norm)
	}
	t.Logf("max abs err %.3g (max |want| %.3g)", maxErr, maxRef)
}

// TestConvVariants checks the tile shapes against the kernel's layout assumptions and WebGPU's default
// limits (a browser device has no more than these).
func TestConvVariants(t *testing.T) {
	for _, c := range []struct{ co, pixels int }{{1, 64}, {16, 1 << 16}, {17, 64}, {512, 256}, {512, 1 << 16}} {
		co := c.co
		k := convTile(co, c.pixels, 1)
		switch {
		case k.BM < min(co, 16):
			t.Errorf("%+v for %d channels: blocks narrower than 16 channels", k, co)
		case k.TM%4 != 0 || k.BM%k.TM != 0 || k.BN%4 != 0:
			t.Errorf("%+v: TM must be a multiple of 4 dividing BM, BN a multiple of 4", k)
		case (k.BM/k.TM)*(k.BN/4) != k.WG:
			t.Errorf("%+v: (BM/TM)*(BN/4) != WG", k)
		case k.WG%k.BN != 0 || k.BK*k.BM < k.WG || (k.BK*k.BM)%k.WG != 0 || (k.BK*k.BN)%k.WG != 0:
			t.Errorf("%+v: the staging loads do not divide evenly over the workgroup", k)
		case 4*k.BK*(k.BM+k.BN) > 16384:
			t.Errorf("%+v: %d bytes of workgroup memory, over 16 KiB", k, 4*k.BK*(k.BM+k.BN))
		case k.WG > 256:
			t.Errorf("%+v: over 256 invocations", k)
		}
	}
}

// waitIdle submits the pending work and blocks until the device has finished it.
func waitIdle(b *Backend) error { return b.Finish() }

// BenchmarkConv3x3WebGPU times a 3x3, stride 1, pad 1 conv of [1, 64, 64, 64] to 64 channels (a decoder
// layer shape at reduced size, so that lavapipe finishes it quickly) and reports GFLOP/s (2 flops per
// multiply-add).
func BenchmarkConv3x3WebGPU(bm *testing.B) {
	b, err := New()
	if err != nil {
		bm.Skip(err)
	}
	defer b.Close()
	const B, Ci, H, W, Co = 1, 64, 64, 64, 64
	r := rand.New(rand.NewSource(1))
	o := core.NewOps(b)
	x := o.Upload(backendtest.Randn(r, 0, 1, B, Ci, H, W))
	w := o.Upload(backendtest.Randn(r, 0, 0.05, Co, Ci, 3, 3))
	bias := o.Upload(backendtest.Randn(r, 0, 0.5, Co))
	if err := o.Err(); err != nil {
		bm.Fatal(err)
	}
	step := func() {
		y, err := b.Conv2d(x, w, bias, 1, [4]int{1, 1, 1, 1})
		if err != nil {
			bm.Fatal(err)
		}
		b.Free(y)
	}
	step() // compile the pipeline
	if err := waitIdle(b); err != nil {
		bm.Fatal(err)
	}
	bm.ResetTimer()
	for bm.Loop() {
		step()
		if err := waitIdle(b); err != nil {
			bm.Fatal(err)
		}
	}
	flops := 2.0 * B * Co * Ci * 9 * H * W
	bm.ReportMetric(flops*float64(bm.N)/bm.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// TestSpatialErrors calls the conv, resize, codebook and copy ops with bad arguments on the CPU reference
// and on this backend: both must fail the same way (a *core.ShapeError or another error), never panic
// and never return a result.
func TestSpatialErrors(t *testing.T) {
	gpu := newTestBackend(t)
	type call func(be core.Backend, T func(shape ...int) *core.Tensor) (any, error)
	tensor := func(x *core.Tensor, err error) (any, error) { return x, err }
	cases := []struct {
		name string
		f    call
	}{
		{"slice range", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.SliceLast(T(2, 5), 3, 3))
		}},
		{"slice negative", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.SliceLast(T(2, 5), -1, 2))
		}},
		{"slice scalar", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.SliceLast(T(), 0, 1))
		}},
		{"slice negative shape", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			x, err := core.Reshape(T(2, 3), -2, -3)
			if err != nil {
				return nil, err
			}
			return tensor(be.SliceLast(x, 0, 1))
		}},
		{"concat none", func(be core.Backend, T func(...int) *core.Tensor) (any, error) { return tensor(be.Concat(0)) }},
		{"concat rank", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Concat(0, T(2, 3), T(2)))
		}},
		{"concat dims", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Concat(0, T(2, 3), T(2, 4)))
		}},
		{"concat axis", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Concat(2, T(2, 3), T(2, 3)))
		}},
		{"concat axis negative", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Concat(-3, T(2, 3), T(2, 3)))
		}},
		{"concat nil", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Concat(0, T(2, 3), nil))
		}},
		{"transpose rank", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Transpose12(T(2, 3)))
		}},
		{"zeros negative", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Zeros(core.Shape{2, -1}))
		}},
		{"writerows past the end", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return nil, be.WriteRows(T(2, 5, 3), T(2, 2, 3), 4)
		}},
		{"writerows negative offset", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return nil, be.WriteRows(T(2, 5, 3), T(2, 2, 3), -1)
		}},
		{"writerows batch", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return nil, be.WriteRows(T(2, 5, 3), T(1, 2, 3), 0)
		}},
		{"writerows channels", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return nil, be.WriteRows(T(2, 5, 3), T(2, 2, 4), 0)
		}},
		{"writerows rank", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return nil, be.WriteRows(T(10, 3), T(2, 3), 0)
		}},
		{"writerows nil", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return nil, be.WriteRows(nil, T(2, 2, 3), 0)
		}},
		{"conv channels", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Conv2d(T(1, 3, 5, 5), T(4, 2, 3, 3), nil, 1, [4]int{}))
		}},
		{"conv stride", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Conv2d(T(1, 3, 5, 5), T(4, 3, 3, 3), nil, 0, [4]int{}))
		}},
		{"conv padding", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Conv2d(T(1, 3, 5, 5), T(4, 3, 3, 3), nil, 1, [4]int{0, -1, 0, 0}))
		}},
		{"conv kernel too big", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Conv2d(T(1, 3, 2, 5), T(4, 3, 3, 3), nil, 1, [4]int{}))
		}},
		{"conv bias", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Conv2d(T(1, 3, 5, 5), T(4, 3, 3, 3), T(3), 1, [4]int{}))
		}},
		{"conv rank", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Conv2d(T(3, 5, 5), T(4, 3, 3, 3), nil, 1, [4]int{}))
		}},
		{"conv nil w", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Conv2d(T(1, 3, 5, 5), nil, nil, 1, [4]int{}))
		}},
		{"upsample rank", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Upsample2x(T(3, 5, 5)))
		}},
		{"bicubic size", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.ResizeBicubic(T(1, 1, 4, 4), 0, 4))
		}},
		{"bicubic rank", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.ResizeBicubic(T(1, 4, 4), 8, 8))
		}},
		{"bicubic empty input", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.ResizeBicubic(T(1, 1, 0, 4), 8, 8))
		}},
		{"bicubic nil", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.ResizeBicubic(nil, 8, 8))
		}},
		{"area size", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.ResizeArea(T(1, 1, 4, 4), 2, -1))
		}},
		{"area rank", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.ResizeArea(T(4, 4), 2, 2))
		}},
		{"embedding rank", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Embedding(T(4), []int{0}))
		}},
		{"embedding id", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Embedding(T(4, 2), []int{1, 4}))
		}},
		{"embedding negative id", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return tensor(be.Embedding(T(4, 2), []int{-1}))
		}},
		{"nearest C", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return be.NearestCode(T(3, 4), T(5, 3))
		}},
		{"nearest empty codebook", func(be core.Backend, T func(...int) *core.Tensor) (any, error) {
			return be.NearestCode(T(3, 4), T(0, 4))
		}},
		{"nearest nil", func(be core.Backend, T func(...int) *core.Tensor) (any, error) { return be.NearestCode(T(3, 4), nil) }},
	}
	ref := cpu.New(1)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := func(be core.Backend) (err error) {
				r := rand.New(rand.NewSource(3))
				T := func(shape ...int) *core.Tensor {
					x, err := be.Upload(backendtest.Randn(r, 0, 1, shape...))
					if err != nil {
						t.Fatalf("%s upload: %v", be.Name(), err)
					}
					return x
				}
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("%s panicked: %v", be.Name(), p)
					}
				}()
				res, err := c.f(be, T)
				if err == nil {
					t.Fatalf("%s: no error (result %v)", be.Name(), res)
				}
				switch v := res.(type) {
				case *core.Tensor:
					if v != nil {
						t.Errorf("%s returned a tensor along with error %q", be.Name(), err)
					}
				case []int:
					if v != nil {
						t.Errorf("%s returned ids along with error %q", be.Name(), err)
					}
				}
				return err
			}
			want, got := run(ref), run(gpu)
			var se *core.ShapeError
			if errors.As(want, &se) != errors.As(got, &se) {
				t.Errorf("cpu: %v\nwebgpu: %v\n(one is a *core.ShapeError, the other is not)", want, got)
			}
			t.Logf("webgpu: %v", got)
		})
	}
}
