package webgpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/backendtest"
)

func quantizeRandn(t testing.TB, r *rand.Rand, s core.QuantScheme, M, K int) core.QuantHost {
	t.Helper()
	q, err := core.Quantize(backendtest.Randn(r, 0, 0.05, M, K), s)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestQuantUseAfterFree: a quantized weight holds exactly its two buffers, Free (through any view)
// releases both, and using it afterwards is an error.
func TestQuantUseAfterFree(t *testing.T) {
	b := newTestBackend(t)
	r := rand.New(rand.NewSource(4))
	x, err := b.Upload(backendtest.Randn(r, 0, 1, 3, 70))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []core.QuantScheme{core.QuantInt8, core.QuantInt4} {
		q := quantizeRandn(t, r, s, 5, 70)
		before := b.live
		w, err := b.UploadQuant(q)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := b.live-before, uint64(4*len(q.Codes)+4*len(q.Scales)); got != want {
			t.Fatalf("%v: upload added %d live bytes, want %d (codes and scales)", s, got, want)
		}
		y, err := b.Linear(x, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.Free(y)
		view, err := core.Reshape(w, 70, 5)
		if err != nil {
			t.Fatal(err)
		}
		b.Free(view)
		b.Free(w) // double free is harmless
		if b.live != before {
			t.Fatalf("%v: %d live bytes after Free, want %d", s, b.live, before)
		}
		if _, err := b.Linear(x, w, nil); err == nil || !strings.Contains(err.Error(), "after Free") {
			t.Fatalf("%v: Linear after Free: %v", s, err)
		}
	}
}

// TestQuantErrors: malformed weights are refused at upload with the core.QuantError, and Linear's checks
// (plus a reshaped view of the weight) give errors, never panics; other ops refuse quantized tensors.
func TestQuantErrors(t *testing.T) {
	b := newTestBackend(t)
	r := rand.New(rand.NewSource(5))
	q := quantizeRandn(t, r, core.QuantInt4, 4, 6)
	bad := q
	bad.Scales = append([]float32(nil), q.Scales...)
	bad.Scales[2] = float32(math.NaN())
	var qe *core.QuantError
	if _, err := b.UploadQuant(bad); !errors.As(err, &qe) || qe.Field != "scales" {
		t.Fatalf("NaN scale: error %v, want a QuantError on scales", err)
	}
	w, err := b.UploadQuant(q)
	if err != nil {
		t.Fatal(err)
	}
	T := func(shape ...int) *core.Tensor {
		x, err := b.Upload(backendtest.Randn(r, 0, 1, shape...))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	view, _ := core.Reshape(w, 6, 4)
	const shape, plain = 0, 1
	cases := []struct {
		name string
		want int
		f    func() (*core.Tensor, error)
	}{
		{"K", shape, func() (*core.Tensor, error) { return b.Linear(T(3, 4), w, nil) }},
		{"view", shape, func() (*core.Tensor, error) { return b.Linear(T(3, 4), view, nil) }},
		{"bias", shape, func() (*core.Tensor, error) { return b.Linear(T(3, 6), w, T(5)) }},
		{"scalar x", shape, func() (*core.Tensor, error) { return b.Linear(T(), w, nil) }},
		{"nil x", plain, func() (*core.Tensor, error) { return b.Linear(nil, w, nil) }},
		{"quantized x", plain, func() (*core.Tensor, error) { return b.Linear(w, w, nil) }},
		{"quantized bias", plain, func() (*core.Tensor, error) { return b.Linear(T(3, 6), w, w) }},
		{"add", plain, func() (*core.Tensor, error) { return b.Add(w, w) }},
	}
	for _, c := range cases {
		var (
			y   *core.Tensor
			err error
		)
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("%s: panicked: %v", c.name, p)
				}
			}()
			y, err = c.f()
		}()
		var se *core.ShapeError
		if err == nil || y != nil || (c.want == shape) != errors.As(err, &se) {
			t.Errorf("%s: got %v, %v; want an error (shape error: %v)", c.name, y, err, c.want == shape)
		}
		t.Logf("%s: %v", c.name, err)
	}
	if _, err := b.Download(w); err == nil {
		t.Error("Download of a quantized weight succeeded")
	}
	// N = 0: an empty output, no dispatch.
	y, err := b.Linear(T(0, 6), w, nil)
	if err != nil || !y.Shape().Equal(core.Shape{0, 4}) {
		t.Fatalf("N = 0: %v, %v", y, err)
	}
}

// BenchmarkLinearInt8WebGPU and BenchmarkLinearInt4WebGPU measure the quantized Linear at the shape of
// BenchmarkLinearWebGPU, x [256, 512] @ w [512, 512]^T + b, and a skinny x [8, 1024] @ w [4096, 1024]^T
// (VAR-d16's largest weight at its first scales, where reading the weight dominates). Weight GB/s counts
// the codes and scales read once per call. Under lavapipe the figures are CPU-emulated Vulkan.
func BenchmarkLinearInt8WebGPU(bm *testing.B) { benchLinearQuant(bm, core.QuantInt8) }
func BenchmarkLinearInt4WebGPU(bm *testing.B) { benchLinearQuant(bm, core.QuantInt4) }

func benchLinearQuant(bm *testing.B, s core.QuantScheme) {
	b, err := New()
	if err != nil {
		bm.Skip(err)
	}
	defer b.Close()
	for _, sh := range []struct{ N, K, M int }{{256, 512, 512}, {8, 1024, 4096}} {
		bm.Run(fmt.Sprintf("%dx%dx%d", sh.N, sh.M, sh.K), func(bm *testing.B) {
			N, K, M := sh.N, sh.K, sh.M
			r := rand.New(rand.NewSource(1))
			q := quantizeRandn(bm, r, s, M, K)
			o := core.NewOps(b)
			x := o.Upload(backendtest.Randn(r, 0, 1, N, K))
			bias := o.Upload(backendtest.Randn(r, 0, 1, M))
			w, err := b.UploadQuant(q)
			if err != nil {
				bm.Fatal(err)
			}
			defer func() { o.Free(x); o.Free(bias); b.Free(w) }()
			timeLinear(bm, o, x, w, bias)
			perSec := float64(bm.N) / bm.Elapsed().Seconds()
			bm.ReportMetric(2*float64(N*M*K)*perSec/1e9, "GFLOP/s")
			bm.ReportMetric(float64(4*len(q.Codes)+4*len(q.Scales))*perSec/1e9, "weightGB/s")
			bm.Logf("adapter: %v, %v, x [%d, %d], w [%d, %d]", b.Adapter(), s, N, K, M, K)
		})
	}
}
