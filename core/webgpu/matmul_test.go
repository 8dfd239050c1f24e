package webgpu

import (
	"errors"
	"math/rand"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/backendtest"
)

// TestLinalgErrors calls Linear, Attention, the norms and the exact GELU with the arguments the CPU
// reference rejects: each must return an error (a *core.ShapeError for bad shapes, ErrUnsupported for a
// head dimension beyond the attention kernel), no tensor, and never panic.
func TestLinalgErrors(t *testing.T) {
	b := newTestBackend(t)
	r := rand.New(rand.NewSource(3))
	T := func(shape ...int) *core.Tensor {
		x, err := b.Upload(backendtest.Randn(r, 0, 1, shape...))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	// Element count 6, but not a valid shape (core.Reshape refuses it, so wrap the storage directly).
	negative := core.NewTensor(core.Shape{-2, -3}, T(2, 3).Storage())
	foreign := core.NewTensor(core.Shape{2}, []float32{1, 2})
	const shape, plain, unsupported = 0, 1, 2
	cases := []struct {
		name string
		want int
		f    func() (*core.Tensor, error)
	}{
		{"linear K", shape, func() (*core.Tensor, error) { return b.Linear(T(3, 4), T(5, 3), nil) }},
		{"linear w rank", shape, func() (*core.Tensor, error) { return b.Linear(T(3, 4), T(5, 4, 1), nil) }},
		{"linear bias", shape, func() (*core.Tensor, error) { return b.Linear(T(3, 4), T(5, 4), T(4)) }},
		{"linear scalar x", shape, func() (*core.Tensor, error) { return b.Linear(T(), T(1, 1), nil) }},
		{"linear M 0", shape, func() (*core.Tensor, error) { return b.Linear(T(3, 4), T(0, 4), nil) }},
		{"linear foreign", plain, func() (*core.Tensor, error) { return b.Linear(foreign, T(1, 2), nil) }},
		{"linear negative shape", shape, func() (*core.Tensor, error) { return b.Linear(negative, T(1, 3), nil) }},
		{"linear nil w", plain, func() (*core.Tensor, error) { return b.Linear(T(3, 4), nil, nil) }},

		{"attention heads", shape, func() (*core.Tensor, error) { return b.Attention(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), 4, 1, nil) }},
		{"attention zero heads", shape, func() (*core.Tensor, error) {
			return b.Attention(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), 0, 1, nil)
		}},
		{"attention k v", shape, func() (*core.Tensor, error) { return b.Attention(T(1, 2, 6), T(1, 3, 6), T(1, 4, 6), 2, 1, nil) }},
		{"attention C", shape, func() (*core.Tensor, error) { return b.Attention(T(1, 2, 6), T(1, 3, 4), T(1, 3, 4), 2, 1, nil) }},
		{"attention mask", shape, func() (*core.Tensor, error) {
			return b.Attention(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), 2, 1, T(3, 2))
		}},
		{"attention rank", shape, func() (*core.Tensor, error) { return b.Attention(T(2, 6), T(3, 6), T(3, 6), 2, 1, nil) }},
		{"attention nil v", plain, func() (*core.Tensor, error) { return b.Attention(T(1, 2, 6), T(1, 3, 6), nil, 2, 1, nil) }},
		{"attention head dim", unsupported, func() (*core.Tensor, error) {
			return b.Attention(T(1, 2, 1100), T(1, 3, 1100), T(1, 3, 1100), 1, 1, nil)
		}},
		{"attention prefix long", shape, func() (*core.Tensor, error) {
			return b.AttentionPrefix(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), 4, 2, 1)
		}},
		{"attention prefix negative", shape, func() (*core.Tensor, error) {
			return b.AttentionPrefix(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), -1, 2, 1)
		}},
		{"attention prefix k v", shape, func() (*core.Tensor, error) {
			return b.AttentionPrefix(T(1, 2, 6), T(1, 3, 6), T(1, 4, 6), 2, 2, 1)
		}},

		{"layernorm scalar", shape, func() (*core.Tensor, error) { return b.LayerNorm(T(), 1e-6) }},
		{"layernorm empty rows", shape, func() (*core.Tensor, error) { return b.LayerNorm(T(3, 0), 1e-6) }},
		{"layernorm negative", shape, func() (*core.Tensor, error) { return b.LayerNorm(negative, 1e-6) }},
		{"layernorm affine w", shape, func() (*core.Tensor, error) { return b.LayerNormAffine(T(3, 4), T(3), nil, 1e-6) }},
		{"layernorm affine b", shape, func() (*core.Tensor, error) { return b.LayerNormAffine(T(3, 4), T(4), T(1, 4), 1e-6) }},
		{"layernorm affine nil w", plain, func() (*core.Tensor, error) { return b.LayerNormAffine(T(3, 4), nil, T(4), 1e-6) }},
		{"layernorm affine scalar", shape, func() (*core.Tensor, error) { return b.LayerNormAffine(T(), T(1), nil, 1e-6) }},
		{"layernorm affine foreign b", plain, func() (*core.Tensor, error) { return b.LayerNormAffine(T(3, 2), T(2), foreign, 1e-6) }},
		{"gelu-erf foreign", plain, func() (*core.Tensor, error) { return b.GELU(foreign) }},
		{"groupnorm groups", shape, func() (*core.Tensor, error) { return b.GroupNorm(T(1, 6, 2, 2), 4, T(6), T(6), 1e-6, false) }},
		{"groupnorm affine", shape, func() (*core.Tensor, error) { return b.GroupNorm(T(1, 6, 2, 2), 3, T(6), T(5), 1e-6, true) }},
		{"groupnorm rank", shape, func() (*core.Tensor, error) { return b.GroupNorm(T(6, 2, 2), 3, T(6), T(6), 1e-6, false) }},
		{"groupnorm no pixels", shape, func() (*core.Tensor, error) { return b.GroupNorm(T(1, 6, 0, 2), 3, T(6), T(6), 1e-6, false) }},
		{"groupnorm nil w", plain, func() (*core.Tensor, error) { return b.GroupNorm(T(1, 6, 2, 2), 3, nil, T(6), 1e-6, false) }},
		{"normalize heads", shape, func() (*core.Tensor, error) { return b.NormalizeHeads(T(1, 2, 6), 4, nil) }},
		{"normalize scale", shape, func() (*core.Tensor, error) { return b.NormalizeHeads(T(1, 2, 6), 2, T(3)) }},
		{"normalize rank", shape, func() (*core.Tensor, error) { return b.NormalizeHeads(T(2, 6), 2, nil) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var (
				res *core.Tensor
				err error
			)
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("panicked: %v", p)
					}
				}()
				res, err = c.f()
			}()
			if err == nil {
				t.Fatalf("no error (result %v)", res.Shape())
			}
			if res != nil {
				t.Errorf("returned a tensor along with error %q", err)
			}
			var se *core.ShapeError
			switch {
			case c.want == shape && !errors.As(err, &se):
				t.Errorf("error %q is not a *core.ShapeError", err)
			case c.want == unsupported && !errors.Is(err, core.ErrUnsupported):
				t.Errorf("error %q does not wrap core.ErrUnsupported", err)
			}
			t.Logf("%v", err)
		})
	}
}

// TestLinalgEmpty checks ops on tensors with a zero dimension: they return empty outputs (the CPU
// reference's shapes) without dispatching, and attention over zero keys gives zeros.
func TestLinalgEmpty(t *testing.T) {
	b := newTestBackend(t)
	o := core.NewOps(b)
	up := func(shape ...int) *core.Tensor {
		s := core.Shape(shape)
		return o.Upload(core.HostTensor{Shape: s, Data: make([]float32, s.Numel())})
	}
	checks := []struct {
		name string
		y    *core.Tensor
		want core.Shape
	}{
		{"linear N 0", o.Linear(up(0, 4), up(5, 4), up(5)), core.Shape{0, 5}},
		{"attention L 0", o.Attention(up(2, 0, 6), up(2, 3, 6), up(2, 3, 6), 2, 1, nil), core.Shape{2, 0, 6}},
		{"layernorm rows 0", o.LayerNorm(up(0, 7), 1e-6), core.Shape{0, 7}},
		{"groupnorm B 0", o.GroupNorm(up(0, 4, 2, 2), 2, up(4), up(4), 1e-6, true), core.Shape{0, 4, 2, 2}},
		{"normalize L 0", o.NormalizeHeads(up(1, 0, 6), 2, nil), core.Shape{1, 0, 6}},
	}
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !c.y.Shape().Equal(c.want) {
			t.Errorf("%s: shape %v, want %v", c.name, c.y.Shape(), c.want)
		}
	}
	// S = 0: softmax over no keys is a fully masked row, zeros. The output buffer is a pooled one that
	// held non-zero values, so the zeros must be written.
	r := rand.New(rand.NewSource(1))
	o.Free(o.Linear(o.Upload(backendtest.Randn(r, 5, 1, 2, 3, 6)), o.Upload(backendtest.Randn(r, 1, 1, 6, 6)), nil))
	y := o.Download(o.Attention(up(2, 3, 6), up(2, 0, 6), up(2, 0, 6), 2, 1, nil))
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	for i, v := range y.Data {
		if v != 0 {
			t.Fatalf("attention over no keys: y[%d] = %v, want 0", i, v)
		}
	}
}

// BenchmarkLinearWebGPU measures Linear x [256, 512] @ w [512, 512]^T + b. Under lavapipe (CI, this
// repository's default test device) the figure is CPU-emulated Vulkan and says little about a GPU; run
// it on a real adapter for meaningful numbers (VAR-d16's largest Linear is x [680, 1024], w [4096, 1024]).
func BenchmarkLinearWebGPU(bm *testing.B) {
	const N, K, M = 256, 512, 512
	b, err := New()
	if err != nil {
		bm.Skip(err)
	}
	defer b.Close()
	r := rand.New(rand.NewSource(1))
	o := core.NewOps(b)
	x := o.Upload(backendtest.Randn(r, 0, 1, N, K))
	w := o.Upload(backendtest.Randn(r, 0, 0.05, M, K))
	bias := o.Upload(backendtest.Randn(r, 0, 1, M))
	timeLinear(bm, o, x, w, bias)
	bm.ReportMetric(2*N*M*K*float64(bm.N)/bm.Elapsed().Seconds()/1e9, "GFLOP/s")
	bm.Logf("adapter: %v, x [%d, %d], w [%d, %d]", b.Adapter(), N, K, M, K)
}

// timeLinear times bm.N runs of Linear after an untimed warm-up that compiles the pipeline; the final
// download makes the timing include the device's work.
func timeLinear(bm *testing.B, o *core.Ops, x, w, bias *core.Tensor) {
	bm.Helper()
	o.Download(o.Linear(x, w, bias))
	if err := o.Err(); err != nil {
		bm.Fatal(err)
	}
	bm.ResetTimer()
	var y *core.Tensor
	for i := 0; i < bm.N; i++ {
		o.Free(y)
		y = o.Linear(x, w, bias)
	}
	o.Download(y) // waits for every queued dispatch
	if err := o.Err(); err != nil {
		bm.Fatal(err)
	}
}
