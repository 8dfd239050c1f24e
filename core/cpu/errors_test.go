package cpu

import (
	"errors"
	"fmt"
	"testing"

	"github.com/webvar/webvar/core"
)

// TestErrors calls every op family with bad arguments: each must return an error (a *core.ShapeError for
// bad shapes), never panic and never return a tensor.
func TestErrors(t *testing.T) {
	be := testBackend()
	r := newRand(21)
	T := func(shape ...int) *core.Tensor { x, _ := randTensor(t, be, r, shape...); return x }
	foreign := core.NewTensor(core.Shape{2}, []float64{1, 2}) // storage of some other backend
	// Element count 6, but not a valid shape; core.Reshape refuses it, so wrap the storage directly.
	negative := core.NewTensor(core.Shape{-2, -3}, T(2, 3).Storage())

	type call func() (any, error)
	tensor := func(x *core.Tensor, err error) (any, error) { return x, err }
	cases := []struct {
		name  string
		shape bool // want a *core.ShapeError
		f     call
	}{
		{"upload length", true, func() (any, error) {
			return be.Upload(core.HostTensor{Shape: core.Shape{2, 2}, Data: make([]float32, 3)})
		}},
		{"upload negative dim", true, func() (any, error) {
			return be.Upload(core.HostTensor{Shape: core.Shape{-1, -2}, Data: make([]float32, 2)})
		}},
		{"download nil", false, func() (any, error) { h, err := be.Download(nil); return h.Data, err }},
		{"download foreign", false, func() (any, error) { h, err := be.Download(foreign); return h.Data, err }},

		{"linear K", true, func() (any, error) { return tensor(be.Linear(T(3, 4), T(5, 3), nil)) }},
		{"linear w rank", true, func() (any, error) { return tensor(be.Linear(T(3, 4), T(5, 4, 1), nil)) }},
		{"linear bias", true, func() (any, error) { return tensor(be.Linear(T(3, 4), T(5, 4), T(4))) }},
		{"linear scalar x", true, func() (any, error) { return tensor(be.Linear(T(), T(1, 1), nil)) }},
		{"linear foreign", false, func() (any, error) { return tensor(be.Linear(foreign, T(1, 2), nil)) }},
		{"linear negative shape", true, func() (any, error) { return tensor(be.Linear(negative, T(1, 3), nil)) }},

		{"attention heads", true, func() (any, error) { return tensor(be.Attention(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), 4, 1, nil)) }},
		{"attention zero heads", true, func() (any, error) {
			return tensor(be.Attention(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), 0, 1, nil))
		}},
		{"attention k v", true, func() (any, error) { return tensor(be.Attention(T(1, 2, 6), T(1, 3, 6), T(1, 4, 6), 2, 1, nil)) }},
		{"attention C", true, func() (any, error) { return tensor(be.Attention(T(1, 2, 6), T(1, 3, 4), T(1, 3, 4), 2, 1, nil)) }},
		{"attention mask", true, func() (any, error) {
			return tensor(be.Attention(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), 2, 1, T(3, 2)))
		}},
		{"attention rank", true, func() (any, error) { return tensor(be.Attention(T(2, 6), T(3, 6), T(3, 6), 2, 1, nil)) }},
		{"attention nil v", false, func() (any, error) { return tensor(be.Attention(T(1, 2, 6), T(1, 3, 6), nil, 2, 1, nil)) }},
		{"attention prefix long", true, func() (any, error) {
			return tensor(be.AttentionPrefix(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), 4, 2, 1))
		}},
		{"attention prefix negative", true, func() (any, error) {
			return tensor(be.AttentionPrefix(T(1, 2, 6), T(1, 3, 6), T(1, 3, 6), -1, 2, 1))
		}},
		{"attention prefix k v", true, func() (any, error) {
			return tensor(be.AttentionPrefix(T(1, 2, 6), T(1, 3, 6), T(1, 4, 6), 2, 2, 1))
		}},

		{"layernorm scalar", true, func() (any, error) { return tensor(be.LayerNorm(T(), 1e-6)) }},
		{"layernorm empty rows", true, func() (any, error) { return tensor(be.LayerNorm(T(3, 0), 1e-6)) }},
		{"layernorm affine w", true, func() (any, error) { return tensor(be.LayerNormAffine(T(3, 4), T(3), nil, 1e-6)) }},
		{"layernorm affine b", true, func() (any, error) { return tensor(be.LayerNormAffine(T(3, 4), T(4), T(1, 4), 1e-6)) }},
		{"layernorm affine nil w", false, func() (any, error) { return tensor(be.LayerNormAffine(T(3, 4), nil, T(4), 1e-6)) }},
		{"layernorm affine scalar", true, func() (any, error) { return tensor(be.LayerNormAffine(T(), T(1), nil, 1e-6)) }},
		{"layernorm affine foreign b", false, func() (any, error) { return tensor(be.LayerNormAffine(T(3, 2), T(2), foreign, 1e-6)) }},
		{"modulate", true, func() (any, error) { return tensor(be.Modulate(T(2, 3, 4), T(2, 3), T(2, 4))) }},
		{"groupnorm groups", true, func() (any, error) { return tensor(be.GroupNorm(T(1, 6, 2, 2), 4, T(6), T(6), 1e-6, false)) }},
		{"groupnorm affine", true, func() (any, error) { return tensor(be.GroupNorm(T(1, 6, 2, 2), 3, T(6), T(5), 1e-6, true)) }},
		{"groupnorm rank", true, func() (any, error) { return tensor(be.GroupNorm(T(6, 2, 2), 3, T(6), T(6), 1e-6, false)) }},
		{"groupnorm nil w", false, func() (any, error) { return tensor(be.GroupNorm(T(1, 6, 2, 2), 3, nil, T(6), 1e-6, false)) }},
		{"normalize heads", true, func() (any, error) { return tensor(be.NormalizeHeads(T(1, 2, 6), 4, nil)) }},
		{"normalize scale", true, func() (any, error) { return tensor(be.NormalizeHeads(T(1, 2, 6), 2, T(3))) }},
		{"normalize rank", true, func() (any, error) { return tensor(be.NormalizeHeads(T(2, 6), 2, nil)) }},

		{"gelu foreign", false, func() (any, error) { return tensor(be.GELUTanh(foreign)) }},
		{"gelu-erf nil", false, func() (any, error) { return tensor(be.GELU(nil)) }},
		{"silu nil", false, func() (any, error) { return tensor(be.SiLU(nil)) }},
		{"add not suffix", true, func() (any, error) { return tensor(be.Add(T(2, 3), T(2))) }},
		{"add b larger", true, func() (any, error) { return tensor(be.Add(T(3), T(2, 3))) }},
		{"addmulrows", true, func() (any, error) { return tensor(be.AddMulRows(T(2, 3, 4), T(2, 3, 4), T(3, 4))) }},
		{"addmulrows y", true, func() (any, error) { return tensor(be.AddMulRows(T(2, 3, 4), T(2, 3, 5), T(2, 4))) }},
		{"axpby", true, func() (any, error) { return tensor(be.Axpby(1, T(2, 3), 1, T(3, 2))) }},
		{"clamp range", false, func() (any, error) { return tensor(be.Clamp(T(2), 1, -1)) }},

		{"slice range", true, func() (any, error) { return tensor(be.SliceLast(T(2, 5), 3, 3)) }},
		{"slice negative", true, func() (any, error) { return tensor(be.SliceLast(T(2, 5), -1, 2)) }},
		{"slice scalar", true, func() (any, error) { return tensor(be.SliceLast(T(), 0, 1)) }},
		{"concat none", true, func() (any, error) { return tensor(be.Concat(0)) }},
		{"concat rank", true, func() (any, error) { return tensor(be.Concat(0, T(2, 3), T(2))) }},
		{"concat dims", true, func() (any, error) { return tensor(be.Concat(0, T(2, 3), T(2, 4))) }},
		{"concat axis", true, func() (any, error) { return tensor(be.Concat(2, T(2, 3), T(2, 3))) }},
		{"concat axis negative", true, func() (any, error) { return tensor(be.Concat(-3, T(2, 3), T(2, 3))) }},
		{"concat nil", false, func() (any, error) { return tensor(be.Concat(0, T(2, 3), nil)) }},
		{"transpose rank", true, func() (any, error) { return tensor(be.Transpose12(T(2, 3))) }},
		{"zeros negative", true, func() (any, error) { return tensor(be.Zeros(core.Shape{2, -1})) }},
		{"writerows past the end", true, func() (any, error) { return nil, be.WriteRows(T(2, 5, 3), T(2, 2, 3), 4) }},
		{"writerows negative offset", true, func() (any, error) { return nil, be.WriteRows(T(2, 5, 3), T(2, 2, 3), -1) }},
		{"writerows batch", true, func() (any, error) { return nil, be.WriteRows(T(2, 5, 3), T(1, 2, 3), 0) }},
		{"writerows channels", true, func() (any, error) { return nil, be.WriteRows(T(2, 5, 3), T(2, 2, 4), 0) }},
		{"writerows rank", true, func() (any, error) { return nil, be.WriteRows(T(10, 3), T(2, 3), 0) }},
		{"writerows nil", false, func() (any, error) { return nil, be.WriteRows(nil, T(2, 2, 3), 0) }},

		{"conv channels", true, func() (any, error) { return tensor(be.Conv2d(T(1, 3, 5, 5), T(4, 2, 3, 3), nil, 1, [4]int{})) }},
		{"conv stride", true, func() (any, error) { return tensor(be.Conv2d(T(1, 3, 5, 5), T(4, 3, 3, 3), nil, 0, [4]int{})) }},
		{"conv padding", true, func() (any, error) {
			return tensor(be.Conv2d(T(1, 3, 5, 5), T(4, 3, 3, 3), nil, 1, [4]int{0, -1, 0, 0}))
		}},
		{"conv kernel too big", true, func() (any, error) {
			return tensor(be.Conv2d(T(1, 3, 2, 5), T(4, 3, 3, 3), nil, 1, [4]int{}))
		}},
		{"conv bias", true, func() (any, error) { return tensor(be.Conv2d(T(1, 3, 5, 5), T(4, 3, 3, 3), T(3), 1, [4]int{})) }},
		{"conv rank", true, func() (any, error) { return tensor(be.Conv2d(T(3, 5, 5), T(4, 3, 3, 3), nil, 1, [4]int{})) }},
		{"upsample rank", true, func() (any, error) { return tensor(be.Upsample2x(T(3, 5, 5))) }},
		{"bicubic size", true, func() (any, error) { return tensor(be.ResizeBicubic(T(1, 1, 4, 4), 0, 4)) }},
		{"bicubic rank", true, func() (any, error) { return tensor(be.ResizeBicubic(T(1, 4, 4), 8, 8)) }},
		{"bicubic empty input", true, func() (any, error) { return tensor(be.ResizeBicubic(T(1, 1, 0, 4), 8, 8)) }},
		{"area size", true, func() (any, error) { return tensor(be.ResizeArea(T(1, 1, 4, 4), 2, -1)) }},
		{"area rank", true, func() (any, error) { return tensor(be.ResizeArea(T(4, 4), 2, 2)) }},

		{"embedding rank", true, func() (any, error) { return tensor(be.Embedding(T(4), []int{0})) }},
		{"embedding id", false, func() (any, error) { return tensor(be.Embedding(T(4, 2), []int{1, 4})) }},
		{"nearest C", true, func() (any, error) { return be.NearestCode(T(3, 4), T(5, 3)) }},
		{"nearest empty codebook", true, func() (any, error) { return be.NearestCode(T(3, 4), T(0, 4)) }},
		{"nearest foreign", false, func() (any, error) { return be.NearestCode(T(3, 4), foreign) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var (
				res any
				err error
			)
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("panic: %v", p)
						t.Fatalf("panicked: %v", p)
					}
				}()
				res, err = c.f()
			}()
			if err == nil {
				t.Fatalf("no error (result %v)", res)
			}
			var se *core.ShapeError
			if c.shape && !errors.As(err, &se) {
				t.Errorf("error %q is not a *core.ShapeError", err)
			}
			switch v := res.(type) {
			case *core.Tensor:
				if v != nil {
					t.Errorf("returned a tensor along with error %q", err)
				}
			case []int:
				if v != nil {
					t.Errorf("returned ids along with error %q", err)
				}
			}
			t.Logf("%s: %v", c.name, err)
		})
	}
}
