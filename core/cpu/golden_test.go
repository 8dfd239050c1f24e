package cpu

import (
	"math"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
)

// Golden tests: each primitive against the output of the official PyTorch code (testdata/var-tiny/golden.md
// says how every tensor was produced). The composite VAE ops (op.vae_*, op.phi.*) are covered by the
// vqvae package's tests.

const goldenPath = "../../testdata/var-tiny/golden.safetensors"

// goldenTol is the absolute tolerance of the primitives (golden.md: "primitives ~1e-5 abs").
const goldenTol = 1e-5

func openGolden(t *testing.T) *safetensors {
	t.Helper()
	st, err := openSafetensors(goldenPath)
	if err != nil {
		t.Fatalf("golden file: %v", err)
	}
	return st
}

// goldenTensor uploads golden tensor name.
func goldenTensor(t *testing.T, be *Backend, st *safetensors, name string) (*core.Tensor, core.HostTensor) {
	t.Helper()
	h, err := st.f32(name)
	if err != nil {
		t.Fatal(err)
	}
	return upload(t, be, h.Shape, h.Data), h
}

// checkGolden compares got with golden tensor name (shape and values).
func checkGolden(t *testing.T, be *Backend, st *safetensors, name string, got *core.Tensor) {
	t.Helper()
	want, err := st.f32(name)
	if err != nil {
		t.Fatal(err)
	}
	testutil.AbsClose(t, name, download(t, be, got, want.Shape), want.Data, goldenTol)
}

func TestGolden(t *testing.T) {
	be := testBackend()
	st := openGolden(t)

	t.Run("bicubic", func(t *testing.T) {
		for _, pn := range []string{"pn1", "pn2", "pn3"} {
			x, _ := goldenTensor(t, be, st, "op.bicubic_up."+pn+".in")
			checkGolden(t, be, st, "op.bicubic_up."+pn+".out", must(t)(be.ResizeBicubic(x, 4, 4)))
		}
	})
	t.Run("area", func(t *testing.T) {
		x, _ := goldenTensor(t, be, st, "op.area_down.in")
		for pn, name := range []string{"pn1", "pn2", "pn3"} {
			checkGolden(t, be, st, "op.area_down."+name+".out", must(t)(be.ResizeArea(x, pn+1, pn+1)))
		}
	})
	t.Run("nearest2x", func(t *testing.T) {
		x, _ := goldenTensor(t, be, st, "op.nearest2x.in")
		checkGolden(t, be, st, "op.nearest2x.out", must(t)(be.Upsample2x(x)))
	})
	t.Run("groupnorm", func(t *testing.T) {
		x, _ := goldenTensor(t, be, st, "op.groupnorm.in")
		w, _ := goldenTensor(t, be, st, "op.groupnorm.weight")
		b, _ := goldenTensor(t, be, st, "op.groupnorm.bias")
		checkGolden(t, be, st, "op.groupnorm.out", must(t)(be.GroupNorm(x, 32, w, b, 1e-6, false)))

		// The fused SiLU must equal SiLU applied to the golden GroupNorm output.
		_, want := goldenTensor(t, be, st, "op.groupnorm.out")
		for i, v := range want.Data {
			want.Data[i] = float32(float64(v) / (1 + math.Exp(-float64(v))))
		}
		got := download(t, be, must(t)(be.GroupNorm(x, 32, w, b, 1e-6, true)), want.Shape)
		testutil.AbsClose(t, "op.groupnorm.out+silu", got, want.Data, goldenTol)
	})
	t.Run("gelu_tanh", func(t *testing.T) {
		x, _ := goldenTensor(t, be, st, "op.gelu_tanh.in")
		checkGolden(t, be, st, "op.gelu_tanh.out", must(t)(be.GELUTanh(x)))
	})
	t.Run("layernorm", func(t *testing.T) {
		x, _ := goldenTensor(t, be, st, "op.layernorm.in")
		checkGolden(t, be, st, "op.layernorm.out", must(t)(be.LayerNorm(x, 1e-6)))
	})
	t.Run("normalize", func(t *testing.T) {
		// F.normalize over the last dim of [2, 3, 7, 16] is NormalizeHeads with one head on [2, 21, 16].
		x, h := goldenTensor(t, be, st, "op.normalize.in")
		y := must(t)(be.NormalizeHeads(must(t)(core.Reshape(x, 2, 21, 16)), 1, nil))
		checkGolden(t, be, st, "op.normalize.out", must(t)(core.Reshape(y, h.Shape...)))
	})
	t.Run("silu", func(t *testing.T) {
		x, _ := goldenTensor(t, be, st, "op.silu.in")
		checkGolden(t, be, st, "op.silu.out", must(t)(be.SiLU(x)))
	})
	t.Run("slow_attn", func(t *testing.T) { testGoldenAttention(t, be, st) })
}

// testGoldenAttention runs VAR's slow_attn fixture: q, k, v [1, H=2, L=30, 64] with the block-causal
// training mask of patch_nums (1, 2, 3, 4) and scale 1.
func testGoldenAttention(t *testing.T, be *Backend, st *safetensors) {
	const H, d = 2, 64
	load := func(name string) (core.HostTensor, *core.Tensor) {
		h, err := st.f32(name)
		if err != nil {
			t.Fatal(err)
		}
		B, L := h.Shape[0], h.Shape[2]
		return h, upload(t, be, core.Shape{B, L, H * d}, bhldToBLC(h.Data, B, H, L, d))
	}
	qh, q := load("op.slow_attn.q")
	_, k := load("op.slow_attn.k")
	_, v := load("op.slow_attn.v")
	B, L := qh.Shape[0], qh.Shape[2]

	// level of each token: 0 for the 1x1 map, 1 for the 2x2 map (tokens 1-4), 2 for 3x3 (5-13), 3 for 4x4.
	var level []int
	for lvl, pn := range []int{1, 2, 3, 4} {
		for range pn * pn {
			level = append(level, lvl)
		}
	}
	if len(level) != L {
		t.Fatalf("fixture has L=%d, patch_nums give %d", L, len(level))
	}
	mask := make([]float32, L*L)
	for l := range L {
		for s := range L {
			if level[s] > level[l] {
				mask[l*L+s] = float32(math.Inf(-1))
			}
		}
	}
	out := must(t)(be.Attention(q, k, v, H, 1, upload(t, be, core.Shape{L, L}, mask)))
	got := blcToBHLD(download(t, be, out, core.Shape{B, L, H * d}), B, H, L, d)
	want, err := st.f32("op.slow_attn.out")
	if err != nil {
		t.Fatal(err)
	}
	testutil.AbsClose(t, "op.slow_attn.out", got, want.Data, goldenTol)
}

// bhldToBLC converts PyTorch's per-head layout [B, H, L, d] to ours, [B, L, H*d] with heads side by side.
func bhldToBLC(x []float32, B, H, L, d int) []float32 {
	out := make([]float32, len(x))
	for b := range B {
		for h := range H {
			for l := range L {
				copy(out[((b*L+l)*H+h)*d:][:d], x[((b*H+h)*L+l)*d:][:d])
			}
		}
	}
	return out
}

// blcToBHLD is the inverse of bhldToBLC.
func blcToBHLD(x []float32, B, H, L, d int) []float32 {
	out := make([]float32, len(x))
	for b := range B {
		for h := range H {
			for l := range L {
				copy(out[((b*H+h)*L+l)*d:][:d], x[((b*L+l)*H+h)*d:][:d])
			}
		}
	}
	return out
}
