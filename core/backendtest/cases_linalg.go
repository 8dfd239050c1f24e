package backendtest

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/webvar/webvar/core"
)

// Rows for Linear, Attention, LayerNorm(Affine), GroupNorm and NormalizeHeads. Sizes straddle the kernels' tiles
// (64x64 matmul tiles with K slices of 16, attention key chunks of 64, norm workgroups of 256 and 64).
func matmulNormAttentionCases() []Case {
	var cs []Case
	cs = append(cs, linearCases()...)
	cs = append(cs, linearGELUCases()...)
	cs = append(cs, attentionCases()...)
	cs = append(cs, normCases()...)
	return cs
}

const (
	tolMatmul = 1e-4
	tolNorm   = 1e-5
)

// linearCase is y = x @ w^T (+ b) for x of shape xShape (last dimension K) and w [M, K].
func linearCase(name string, xShape []int, M int, bias bool) Case {
	K := xShape[len(xShape)-1]
	return Case{
		Name: name,
		Inputs: func(r *rand.Rand) []core.HostTensor {
			// w scaled like a trained layer (std 1/sqrt(K)) so outputs stay O(1) and the tolerance means
			// the same at every K.
			ins := []core.HostTensor{Randn(r, 0, 1, xShape...), Randn(r, 0, 1/math.Sqrt(float64(K)), M, K)}
			if bias {
				ins = append(ins, Randn(r, 0, 1, M))
			}
			return ins
		},
		Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			var b *core.Tensor
			if bias {
				b = in[2]
			}
			return o.Linear(in[0], in[1], b)
		},
		Tol: tolMatmul,
	}
}

func linearCases() []Case {
	return []Case{
		linearCase("linear-1x1x1", []int{1, 1}, 1, false),
		linearCase("linear-1x1x1-bias", []int{1, 1}, 1, true),
		linearCase("linear-7x13x17-bias", []int{7, 17}, 13, true),
		linearCase("linear-65x129x33", []int{65, 33}, 129, false),
		linearCase("linear-65x129x33-bias", []int{65, 33}, 129, true),
		linearCase("linear-2x37x70-45-bias", []int{2, 37, 70}, 45, true),
		linearCase("linear-256x257x300-bias", []int{256, 300}, 257, true),
		linearCase("linear-3x200x1000", []int{3, 1000}, 200, false),   // skinny N, long K (split K on WebGPU)
		linearCase("linear-2x70x1100-bias", []int{2, 1100}, 70, true), // split K, ragged last range
	}
}

// attentionCase runs Attention with q [B, L, H*d], k, v [B, S, H*d], scale 1/sqrt(d) and the mask that
// mask(L, S) builds (nil: none).
func attentionCase(name string, B, H, d, L, S int, mask func(L, S int) []float32) Case {
	C := H * d
	return Case{
		Name: name,
		Inputs: func(r *rand.Rand) []core.HostTensor {
			ins := []core.HostTensor{Randn(r, 0, 1, B, L, C), Randn(r, 0, 1, B, S, C), Randn(r, 0, 1, B, S, C)}
			if mask != nil {
				ins = append(ins, core.HostTensor{Shape: core.Shape{L, S}, Data: mask(L, S)})
			}
			return ins
		},
		Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			var m *core.Tensor
			if mask != nil {
				m = in[3]
			}
			return o.Attention(in[0], in[1], in[2], H, float32(1/math.Sqrt(float64(d))), m)
		},
		Tol: tolMatmul,
	}
}

// attentionPrefixCase runs AttentionPrefix over the first n of S rows of k and v (the rows after n hold
// values that would change the result if read).
func attentionPrefixCase(name string, B, H, d, L, n, S int) Case {
	C := H * d
	return Case{
		Name: name,
		Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, B, L, C), Randn(r, 0, 1, B, S, C), Randn(r, 0, 1, B, S, C)}
		},
		Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			return o.AttentionPrefix(in[0], in[1], in[2], n, H, float32(1/math.Sqrt(float64(d))))
		},
		Tol: tolMatmul,
	}
}

// kvCacheCase is VAR's cached generation in miniature: key/value caches of S = sum(ls) rows start as
// Zeros, each step writes its l rows after the earlier ones (WriteRows) and attends to all rows written so
// far (AttentionPrefix); the result is every step's attention output, concatenated. It checks that a
// queueing backend orders each write after the reads of the cache before it.
func kvCacheCase(name string, B, H, d int, ls ...int) Case {
	C := H * d
	S := 0
	for _, l := range ls {
		S += l
	}
	return Case{
		Name: name,
		Inputs: func(r *rand.Rand) []core.HostTensor {
			var ins []core.HostTensor
			for _, l := range ls { // q, k, v of every step
				ins = append(ins, Randn(r, 0, 1, B, l, C), Randn(r, 0, 1, B, l, C), Randn(r, 0, 1, B, l, C))
			}
			return ins
		},
		Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			kc, vc := o.Zeros(B, S, C), o.Zeros(B, S, C)
			defer o.Free(kc, vc)
			var outs []*core.Tensor
			n := 0
			for i, l := range ls {
				o.WriteRows(kc, in[3*i+1], n)
				o.WriteRows(vc, in[3*i+2], n)
				n += l
				outs = append(outs, o.AttentionPrefix(in[3*i], kc, vc, n, H, float32(1/math.Sqrt(float64(d)))))
			}
			y := o.Concat(1, outs...)
			o.Free(outs...)
			return y
		},
		Tol: tolMatmul,
	}
}

// qkvCacheCase is QKVToCache on qkv [B, l, 3C] into caches of S rows at row n (the caches start as
// other values, which the rows outside [n, n+l) must keep), with or without the per-head normalisation
// and q scale; the result is q and both caches, concatenated along the rows.
func qkvCacheCase(name string, B, H, d, l, n, S int, norm, scale bool) Case {
	C := H * d
	return Case{
		Name: name,
		Inputs: func(r *rand.Rand) []core.HostTensor {
			ins := []core.HostTensor{Randn(r, 0, 1, B, l, 3*C), Randn(r, 0, 1, B, S, C), Randn(r, 0, 1, B, S, C)}
			if scale {
				ins = append(ins, Randn(r, 2, 1, H))
			}
			return ins
		},
		Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			var sc *core.Tensor
			if scale {
				sc = in[3]
			}
			q := o.QKVToCache(in[0], H, norm, sc, in[1], in[2], n)
			y := o.Concat(1, q, in[1], in[2])
			o.Free(q)
			return y
		},
		Tol: tolNorm,
	}
}

var negInf = float32(math.Inf(-1))

// randomMask is an additive mask of moderate finite values with some -Inf entries, never a whole row.
func randomMask(L, S int) []float32 {
	r := rand.New(rand.NewSource(int64(L*1000 + S)))
	m := make([]float32, L*S)
	for i := range m {
		m[i] = float32(r.NormFloat64())
		if i%S != 0 && r.Intn(3) == 0 {
			m[i] = negInf
		}
	}
	return m
}

// levelMaskCase is attention over VAR's block-causal attn_bias_for_masking for the given patch numbers:
// L = S = sum pn^2 tokens, and query l sees key s when s's scale is not after l's (-Inf otherwise).
func levelMaskCase(name string, B, H, d int, pns ...int) Case {
	var level []int
	for i, pn := range pns {
		for range pn * pn {
			level = append(level, i)
		}
	}
	L := len(level)
	return attentionCase(name, B, H, d, L, L, func(L, S int) []float32 {
		m := make([]float32, L*S)
		for l := range L {
			for s := range S {
				if level[s] > level[l] {
					m[l*S+s] = negInf
				}
			}
		}
		return m
	})
}

// chunkedMask masks, for query l, the first 64*(l%4) keys (whole key chunks of the kernel, so the online
// softmax starts after fully masked chunks), plus every key of the last query row (a fully masked row
// yields zeros).
func chunkedMask(L, S int) []float32 {
	m := make([]float32, L*S)
	for l := range L {
		for s := range S {
			if s < 64*(l%4) || l == L-1 {
				m[l*S+s] = negInf
			}
		}
	}
	return m
}

func attentionCases() []Case {
	return []Case{
		attentionCase("attention-H3-d5-L7-S11", 2, 3, 5, 7, 11, nil),
		attentionCase("attention-H3-d5-L7-S11-mask", 2, 3, 5, 7, 11, randomMask),
		levelMaskCase("attention-H3-d5-levelmask-1-2-3", 2, 3, 5, 1, 2, 3),
		attentionCase("attention-H2-d64-L30-S30", 2, 2, 64, 30, 30, nil),
		attentionCase("attention-H1-d640-L16-S16", 1, 1, 640, 16, 16, nil),
		attentionCase("attention-H2-d8-L1-S50", 2, 2, 8, 1, 50, nil),
		attentionCase("attention-H2-d16-L6-S230-chunkmask", 1, 2, 16, 6, 230, chunkedMask),
		levelMaskCase("attention-H4-d72-levelmask-1-2-3-4-5-6", 1, 4, 72, 1, 2, 3, 4, 5, 6),
		attentionPrefixCase("attention-prefix-H3-d5-L7-n9-of-S11", 2, 3, 5, 7, 9, 11),
		attentionPrefixCase("attention-prefix-H2-d16-L6-n130-of-S230", 2, 2, 16, 6, 130, 230),
		attentionPrefixCase("attention-prefix-H2-d8-L3-n0-of-S5", 2, 2, 8, 3, 0, 5),
		kvCacheCase("kvcache-H3-d5-steps-1-4-9", 2, 3, 5, 1, 4, 9),
		kvCacheCase("kvcache-H2-d64-steps-1-4-9-16-25-36", 2, 2, 64, 1, 4, 9, 16, 25, 36),
		// Head dimensions up to 64 run the query-tiled kernel (16 queries x 16-key chunks): L and S straddle
		// both, d = 61 leaves a ragged last group of four dimensions, the mask hits partial chunks.
		attentionCase("attention-H3-d61-L33-S47-mask", 2, 3, 61, 33, 47, randomMask),
		attentionCase("attention-H2-d64-L17-S17-chunkmask", 1, 2, 64, 17, 17, chunkedMask),
		attentionPrefixCase("attention-prefix-H2-d64-L16-n33-of-S40", 2, 2, 64, 16, 33, 40),
		attentionCase("attention-H1-d65-L3-S20", 1, 1, 65, 3, 20, nil), // just above: the row kernel
		qkvCacheCase("qkv-cache-H3-d5-l4-n2-of-S9-norm-scale", 2, 3, 5, 4, 2, 9, true, true),
		qkvCacheCase("qkv-cache-H2-d64-l9-n4-of-S13-norm", 2, 2, 64, 9, 4, 13, true, false),
		qkvCacheCase("qkv-cache-H2-d70-l3-n0-of-S3-plain", 1, 2, 70, 3, 0, 3, false, false),
	}
}

func normCases() []Case {
	layerNorm := func(name string, mean, std float64, shape ...int) Case {
		return Case{
			Name:   name,
			Inputs: func(r *rand.Rand) []core.HostTensor { return []core.HostTensor{Randn(r, mean, std, shape...)} },
			Op:     one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.LayerNorm(x, 1e-6) }),
			Tol:    tolNorm,
		}
	}
	// layerNormAffine: w near 1 and b as a trained layer's; b nil when !bias (nn.LayerNorm(bias=False)).
	layerNormAffine := func(bias bool, mean, std float64, shape ...int) Case {
		C := shape[len(shape)-1]
		return Case{
			Name: fmt.Sprintf("layernorm-affine-%v-bias%v-mean%g-std%g", shape, bias, mean, std),
			Inputs: func(r *rand.Rand) []core.HostTensor {
				ins := []core.HostTensor{Randn(r, mean, std, shape...), Randn(r, 1, 0.5, C)}
				if bias {
					ins = append(ins, Randn(r, 0, 1, C))
				}
				return ins
			},
			Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
				var b *core.Tensor
				if bias {
					b = in[2]
				}
				return o.LayerNormAffine(in[0], in[1], b, 1e-6)
			},
			Tol: tolNorm,
		}
	}
	groupNorm := func(groups int, silu bool, mean, std float64, shape ...int) Case {
		C := shape[1]
		return Case{
			Name: fmt.Sprintf("groupnorm-%v-g%d-silu%v-mean%g-std%g", shape, groups, silu, mean, std),
			Inputs: func(r *rand.Rand) []core.HostTensor {
				return []core.HostTensor{Randn(r, mean, std, shape...), Randn(r, 1, 0.5, C), Randn(r, 0, 1, C)}
			},
			Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
				return o.GroupNorm(in[0], groups, in[1], in[2], 1e-6, silu)
			},
			Tol: tolNorm,
		}
	}
	normalize := func(name string, heads int, scale bool, std float64, shape ...int) Case {
		return Case{
			Name: name,
			Inputs: func(r *rand.Rand) []core.HostTensor {
				x := Randn(r, std/4, std, shape...)
				// The first row is all zeros: F.normalize gives 0 / 1e-12 = 0 there.
				clear(x.Data[:shape[2]])
				ins := []core.HostTensor{x}
				if scale {
					ins = append(ins, Randn(r, 2, 1, heads))
				}
				return ins
			},
			Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
				var s *core.Tensor
				if scale {
					s = in[1]
				}
				return o.NormalizeHeads(in[0], heads, s)
			},
			Tol: tolNorm,
		}
	}
	return []Case{
		layerNorm("layernorm-C1", 5, 3, 5, 1),
		layerNorm("layernorm-C128", 5, 3, 3, 4, 128),
		layerNorm("layernorm-C1000", 5, 3, 7, 1000),
		// A mean large next to the spread: a one-pass E[x^2] - E[x]^2 in f32 would lose every digit.
		layerNorm("layernorm-C1024-mean1000-std0.5", 1000, 0.5, 3, 1024),
		// The affine LayerNorm of ViT and GPT-2 blocks: C = 1 (every output is b), C on both sides of the
		// 256-wide workgroup and of 1024, a large mean next to the spread, with and without b.
		layerNormAffine(true, 5, 3, 5, 1),
		layerNormAffine(false, 5, 3, 5, 1),
		layerNormAffine(true, 5, 3, 3, 4, 128),
		layerNormAffine(true, -2, 3, 7, 255),
		layerNormAffine(false, 0, 1, 2, 3, 257),
		layerNormAffine(true, 0, 1, 3, 1024),
		layerNormAffine(false, 5, 3, 2, 1025),
		layerNormAffine(true, 1000, 0.5, 3, 1024),
		layerNormAffine(false, -1000, 0.5, 2, 1025),
		groupNorm(1, false, 5, 3, 2, 64, 5, 6),
		groupNorm(32, false, 5, 3, 2, 64, 5, 6),
		groupNorm(64, true, 5, 3, 2, 64, 5, 6),
		groupNorm(32, true, 5, 3, 2, 64, 5, 6),
		groupNorm(32, false, 5, 3, 1, 32, 33, 17),
		groupNorm(1, true, 5, 3, 1, 32, 33, 17),
		groupNorm(32, true, 5, 3, 1, 32, 33, 17),
		groupNorm(2, true, -200, 2, 1, 8, 64, 72),   // 18432 values per group: 72 per invocation
		groupNorm(1, false, 5, 3, 1, 128, 128, 128), // 2 Mi values in one group: 8192 per invocation
		// Groups above 16384 values are split over workgroups on WebGPU (4096-value chunks, the last one
		// short here): a mean far from zero next to the spread must survive combining the chunks.
		groupNorm(4, true, 1000, 0.5, 1, 16, 64, 81),
		normalize("normalize-H4-d12", 4, false, 2, 2, 7, 48),
		normalize("normalize-H4-d12-scale", 4, true, 2, 2, 7, 48),
		normalize("normalize-H2-d100-scale", 2, true, 2, 1, 3, 200),
		// Norms around F.normalize's 1e-12 clamp, on both sides.
		normalize("normalize-H16-d64-near-eps", 16, true, 1e-13, 2, 5, 1024),
	}
}

// linearGELUCases compare the fused matmul+GELU (when the backend has it) with the CPU's composition of
// Linear and GELUTanh.
func linearGELUCases() []Case {
	mk := func(n, k, m int, bias bool) Case {
		return Case{
			Name: fmt.Sprintf("linear-gelu-%dx%dx%d-bias%v", n, m, k, bias),
			Inputs: func(r *rand.Rand) []core.HostTensor {
				return []core.HostTensor{Randn(r, 0, 1, n, k), Randn(r, 0, 1/math.Sqrt(float64(k)), m, k), Randn(r, 0, 0.5, m)}
			},
			Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
				if bias {
					return o.LinearGELU(in[0], in[1], in[2])
				}
				return o.LinearGELU(in[0], in[1], nil)
			},
			Tol: tolMatmul,
		}
	}
	// The last two have few output tiles and a long K: the WebGPU backend splits K (GELU in the reduction).
	return []Case{mk(7, 17, 13, true), mk(65, 33, 129, false), mk(70, 128, 512, true), mk(2, 1100, 70, true), mk(66, 2048, 65, false)}
}
