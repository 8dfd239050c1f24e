// Package bench measures the engine's speed. RunKernels times each core.Backend op at the shapes VAR-d16
// uses and reports achieved GFLOP/s and GB/s next to the operation's size; `webvar bench -kernels` prints
// the results. RunModel times whole generations per scale and per part (transformer, VQVAE decode,
// previews), and TransformerFLOPs and DecodeFLOPs count their arithmetic from the architecture;
// `webvar bench -model` prints those.
//
// Speed is reported here and by Go benchmarks, never asserted by tests: machines differ too much (and
// the WebGPU backend may run on lavapipe, a CPU emulation) for a time limit to mean anything. The tests of
// this package check that the numbers are produced and measure what they claim to, not how large they are.
package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/webvar/webvar/core"
)

// Kernel sizes.
const (
	// SizeSmall has shapes of 32-256 per dimension: every kernel runs in milliseconds, for tests and CI.
	SizeSmall = "small"
	// SizeD16 has the shapes of VAR-d16 (width 1024, 16 heads, 680 tokens; VQVAE decoding 256x256 images).
	SizeD16 = "d16"
)

// Kernel is one benchmark case: an op of the engine at one shape.
//
// FLOPs and Bytes are nominal, fixed by the shape rather than by how a backend computes the op: a
// multiply-add counts 2 FLOPs, an exp, tanh, division or comparison counts 1, and Bytes is the f32 data
// the op must read and write at least once (each input read once, the output written once). So two
// backends are compared on the same work, and GB/s of a memory-bound op is directly comparable with the
// device's memory bandwidth.
type Kernel struct {
	Name  string // "linear.qkv"
	Op    string // the core.Backend method it times: "Linear"
	Shape string // human-readable operand shapes
	FLOPs int64
	Bytes int64
	// Inputs builds the host inputs from r (seeded, so every backend gets the same data).
	Inputs func(r *core.RNG) []core.HostTensor
	// Run applies the op to the uploaded inputs (in the order Inputs returned them). It returns the output
	// tensor, or nil for an op that returns host data (NearestCode): such an op has completed when it
	// returns.
	Run func(o *core.Ops, in []*core.Tensor) *core.Tensor
	// InPlace says Run writes into one of its inputs and returns that input (WriteRows): the harness
	// waits for it like for an output but never frees it.
	InPlace bool
	// Upload, when set, puts the inputs on the backend instead of a plain Upload of each (quantized
	// weights go through core.UploadQuant). It is not timed.
	Upload func(b core.Backend, hosts []core.HostTensor) ([]*core.Tensor, error)
}

// dims are the shapes of one size. Names follow the model: the transformer's width, MLP hidden width and
// token counts; the VQVAE's channels and feature-map sides.
type dims struct {
	tokens, width, hidden   int // Linear rows (tokens of all scales), C, 4C
	headRows, vocab         int // rows of the head's input (last scale), codebook size V
	attnB, heads, headDim   int
	attnL, attnS            int // queries (last scale) and keys (all scales so far)
	lnB, lnL                int // LayerNorm and other [B, L, C] elementwise ops at the last scale
	condB                   int // rows of the class condition (B with classifier-free guidance)
	hiC, hiHW               int // VQVAE decoder's last level: channels, side
	loC, loHW               int // VQVAE decoder's first level
	cvae, rsB               int // codebook width, batch of the multi-scale quantizer's resizes
	bicIn, bicOut           int // bicubic upsampling of a token map to the full latent side
	areaIn, areaOut         int // area downsampling of the latent to a smaller scale
	codeN, embN             int // rows looked up by NearestCode and Embedding
	imgC, imgHW, transposeC int // output image; channels of the VQVAE attention's qkv transpose
}

// sizeDims returns the shapes of a size (a switch, not a package map: no package-level mutable state).
func sizeDims(size string) (dims, bool) {
	switch size {
	case SizeD16:
		return dims{
			tokens: 680, width: 1024, hidden: 4096, headRows: 256, vocab: 4096,
			attnB: 2, heads: 16, headDim: 64, attnL: 256, attnS: 680,
			lnB: 2, lnL: 256, condB: 2,
			hiC: 128, hiHW: 256, loC: 512, loHW: 16,
			cvae: 32, rsB: 2, bicIn: 10, bicOut: 16, areaIn: 16, areaOut: 13,
			codeN: 256, embN: 256,
			imgC: 3, imgHW: 256, transposeC: 1536,
		}, true
	case SizeSmall:
		return dims{
			tokens: 64, width: 128, hidden: 512, headRows: 32, vocab: 256,
			attnB: 1, heads: 2, headDim: 64, attnL: 32, attnS: 64,
			lnB: 1, lnL: 64, condB: 2,
			hiC: 32, hiHW: 64, loC: 64, loHW: 16,
			cvae: 32, rsB: 1, bicIn: 10, bicOut: 16, areaIn: 16, areaOut: 13,
			codeN: 64, embN: 64,
			imgC: 3, imgHW: 64, transposeC: 192,
		}, true
	}
	return dims{}, false
}

// Kernels returns the benchmark cases of a size (SizeSmall or SizeD16), in the order a generation runs
// them: transformer ops first, then the VQVAE's.
func Kernels(size string) ([]Kernel, error) {
	d, ok := sizeDims(size)
	if !ok {
		return nil, fmt.Errorf("size %q: want %s or %s", size, SizeSmall, SizeD16)
	}
	C := d.width
	return []Kernel{
		linear("linear.qkv", d.tokens, C, 3*C),
		linear("linear.fc1", d.tokens, C, d.hidden),
		linear("linear.fc2", d.tokens, d.hidden, C),
		linear("linear.head", d.headRows, C, d.vocab),
		quantLinear("linear.fc1.int8", core.QuantInt8, d.tokens, C, d.hidden),
		quantLinear("linear.fc1.int4", core.QuantInt4, d.tokens, C, d.hidden),
		attention(d.attnB, d.heads, d.headDim, d.attnL, d.attnS),
		attentionPrefix(d.attnB, d.heads, d.headDim, d.attnL, d.attnS),
		layerNorm(d.lnB, d.lnL, C),
		layerNormAffine(d.lnB, d.lnL, C),
		modulate(d.lnB, d.lnL, C),
		normalizeHeads(d.lnB, d.lnL, C, d.heads),
		unary("gelu-tanh", "GELUTanh", 8, []int{d.tokens, d.hidden}, func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.GELUTanh(x) }),
		unary("gelu-erf", "GELU", 16, []int{d.tokens, d.hidden}, func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.GELU(x) }),
		addMulRows(d.lnB, d.lnL, C),
		ddpmStep(2*d.condB*16, 16),
		unary("silu", "SiLU", 4, []int{d.condB, C}, func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.SiLU(x) }),
		sliceLast(d.tokens, 3*C, C),
		concat(d.attnB, d.attnS-d.attnL, d.attnL, C),
		zeros(d.attnB, d.attnS, C),
		writeRows(d.attnB, d.attnS, d.attnL, C),
		groupNormSiLU(1, d.hiC, d.hiHW),
		conv3x3("conv3x3.hi", 1, d.hiC, d.hiHW, d.hiC),
		conv3x3("conv3x3.lo", 1, d.loC, d.loHW, d.loC),
		upsample2x(1, d.hiC, d.hiHW/2),
		add(1, d.hiC, d.hiHW),
		transpose12(1, d.transposeC, d.loHW*d.loHW),
		bicubic(d.rsB, d.cvae, d.bicIn, d.bicOut),
		area(d.rsB, d.cvae, d.areaIn, d.areaOut),
		axpby(d.rsB, d.cvae, d.bicOut),
		unary("clamp", "Clamp", 2, []int{1, d.imgC, d.imgHW, d.imgHW}, func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.Clamp(x, -1, 1) }),
		nearestCode(d.codeN, d.vocab, d.cvae),
		embedding(d.embN, d.vocab, d.cvae),
	}, nil
}

// Select returns the kernels of size whose names contain filter (any of its comma-separated parts; ""
// selects all). A filter that selects nothing is an error listing the names, so a typo does not pass as
// an empty benchmark.
func Select(size, filter string) ([]Kernel, error) {
	all, err := Kernels(size)
	if err != nil {
		return nil, err
	}
	if filter == "" {
		return all, nil
	}
	var out []Kernel
	for _, k := range all {
		for _, f := range strings.Split(filter, ",") {
			if f != "" && strings.Contains(k.Name, f) {
				out = append(out, k)
				break
			}
		}
	}
	if len(out) == 0 {
		names := make([]string, len(all))
		for i, k := range all {
			names[i] = k.Name
		}
		return nil, fmt.Errorf("filter %q matches no kernel (kernels: %s)", filter, strings.Join(names, ", "))
	}
	return out, nil
}

// f32 is the size of a stored element.
const f32 = 4

func numel(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return n
}

// random returns a host tensor of uniform values in [-1, 1).
func random(r *core.RNG, shape ...int) core.HostTensor {
	data := make([]float32, numel(shape))
	for i := range data {
		data[i] = float32(2*r.Float64() - 1)
	}
	return core.HostTensor{Shape: core.Shape(shape).Clone(), Data: data}
}

func dimsString(shape []int) string { return strings.ReplaceAll(core.Shape(shape).String(), " ", "") }

func linear(name string, n, k, m int) Kernel {
	N, K, M := int64(n), int64(k), int64(m)
	return Kernel{
		Name:  name,
		Op:    "Linear",
		Shape: fmt.Sprintf("x[%d,%d] w[%d,%d] +b", n, k, m, k),
		FLOPs: 2*N*K*M + N*M,
		Bytes: f32 * (N*K + M*K + M + N*M),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, n, k), random(r, m, k), random(r, m)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Linear(in[0], in[1], in[2]) },
	}
}

// quantLinear is linear with the weight quantized blockwise (core.QuantBlock values per f32 scale): the
// bytes count the packed codes and scales instead of f32 weights.
func quantLinear(name string, scheme core.QuantScheme, n, k, m int) Kernel {
	kn := linear(name, n, k, m)
	N, K, M := int64(n), int64(k), int64(m)
	blocks := (K + core.QuantBlock - 1) / core.QuantBlock
	weightBytes := M*blocks*core.QuantBlock*int64(scheme.Bits())/8 + M*blocks*f32
	kn.Shape = fmt.Sprintf("x[%d,%d] w[%d,%d] %v +b", n, k, m, k, scheme)
	kn.Bytes = f32*(N*K+M+N*M) + weightBytes
	kn.Upload = func(b core.Backend, h []core.HostTensor) ([]*core.Tensor, error) {
		q, err := core.Quantize(h[1], scheme)
		if err != nil {
			return nil, err
		}
		x, err := b.Upload(h[0])
		if err != nil {
			return nil, err
		}
		w, err := core.UploadQuant(b, q)
		if err != nil {
			b.Free(x)
			return nil, err
		}
		bias, err := b.Upload(h[2])
		if err != nil {
			b.Free(x)
			b.Free(w)
			return nil, err
		}
		return []*core.Tensor{x, w, bias}, nil
	}
	return kn
}

// attention is attention at VAR's last scale: L queries see all S keys, no mask (the VQVAE's attention
// blocks use Attention; VAR's generation reads its cache through AttentionPrefix).
func attention(b, h, d, l, s int) Kernel {
	C := h * d
	B, H, D, L, S := int64(b), int64(h), int64(d), int64(l), int64(s)
	scale := float32(1 / float64(d)) // any value: the cost does not depend on it
	return Kernel{
		Name:  "attention",
		Op:    "Attention",
		Shape: fmt.Sprintf("B%d H%d d%d L%d S%d", b, h, d, l, s),
		// Two matmuls (q k^T and p v) plus softmax: scale, max, exp, sum and normalise per score.
		FLOPs: B * H * L * S * (4*D + 5),
		Bytes: f32 * (2*B*L*int64(C) + 2*B*S*int64(C)),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, l, C), random(r, b, s, C), random(r, b, s, C)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			return o.Attention(in[0], in[1], in[2], h, scale, nil)
		},
	}
}

// attentionPrefix is VAR's cached attention at the last scale: the cache's first n = S rows, all of them.
func attentionPrefix(b, h, d, l, s int) Kernel {
	k := attention(b, h, d, l, s)
	k.Name, k.Op = "attn-prefix", "AttentionPrefix"
	k.Shape += fmt.Sprintf(" (n %d of %d cached rows)", s, s)
	k.Run = func(o *core.Ops, in []*core.Tensor) *core.Tensor {
		return o.AttentionPrefix(in[0], in[1], in[2], s, h, float32(1/float64(d)))
	}
	return k
}

func layerNorm(b, l, c int) Kernel {
	n := int64(b * l * c)
	return Kernel{
		Name:  "layernorm",
		Op:    "LayerNorm",
		Shape: dimsString([]int{b, l, c}),
		FLOPs: 5 * n, // sum, centre, square-sum, scale
		Bytes: f32 * 2 * n,
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, l, c)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.LayerNorm(in[0], 1e-6) },
	}
}

// layerNormAffine is the LayerNorm of ViT and GPT-2 blocks (MAR, RQ-Transformer), at VAR's shapes. Its
// name avoids "layernorm", which selects the plain LayerNorm alone.
func layerNormAffine(b, l, c int) Kernel {
	n := int64(b * l * c)
	return Kernel{
		Name:  "ln-affine",
		Op:    "LayerNormAffine",
		Shape: fmt.Sprintf("%s w,b[%d]", dimsString([]int{b, l, c}), c),
		FLOPs: 7 * n, // LayerNorm's 5, weight, bias
		Bytes: f32 * (2*n + 2*int64(c)),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, l, c), random(r, c), random(r, c)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.LayerNormAffine(in[0], in[1], in[2], 1e-6) },
	}
}

// ddpmStep is MAR's fused diffusion step (core.Backend.DDPMStep) with guidance, for n tokens of c values
// (MAR-B's busiest iteration predicts about 40 tokens of 16 per image).
func ddpmStep(n, c int) Kernel {
	e := int64(n * c)
	return Kernel{
		Name:  "ddpm-step",
		Op:    "DDPMStep",
		Shape: fmt.Sprintf("x,noise[%d,%d] out[%d,%d]", n, c, 2*n, 2*c),
		FLOPs: 20 * e,
		Bytes: f32 * (3*e + 4*e),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, n, c), random(r, 2*n, 2*c), random(r, n, c)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			return o.DDPMStep(in[0], in[1], in[2], core.DDPMCoefs{Guided: true, CFG: 2.9, SqrtRecipAcp: 160, SqrtRecipm1Acp: 160,
				Coef1: 0.008, Coef2: 0.65, MinLog: -0.7, MaxLog: -0.15, Nonzero: 1, Temperature: 1})
		},
	}
}

func modulate(b, l, c int) Kernel {
	n, bc := int64(b*l*c), int64(b*c)
	return Kernel{
		Name:  "modulate",
		Op:    "Modulate",
		Shape: fmt.Sprintf("%s s,t[%d,%d]", dimsString([]int{b, l, c}), b, c),
		FLOPs: 3 * n,
		Bytes: f32 * (2*n + 2*bc),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, l, c), random(r, b, c), random(r, b, c)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Modulate(in[0], in[1], in[2]) },
	}
}

func normalizeHeads(b, l, c, heads int) Kernel {
	n := int64(b * l * c)
	return Kernel{
		Name:  "normalize-heads",
		Op:    "NormalizeHeads",
		Shape: fmt.Sprintf("%s %d heads", dimsString([]int{b, l, c}), heads),
		FLOPs: 4 * n, // square-sum, divide, scale
		Bytes: f32 * (2*n + int64(heads)),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, l, c), random(r, heads)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.NormalizeHeads(in[0], heads, in[1]) },
	}
}

func addMulRows(b, l, c int) Kernel {
	n, bc := int64(b*l*c), int64(b*c)
	return Kernel{
		Name:  "add-mul-rows",
		Op:    "AddMulRows",
		Shape: fmt.Sprintf("%s g[%d,%d]", dimsString([]int{b, l, c}), b, c),
		FLOPs: 2 * n,
		Bytes: f32 * (3*n + bc),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, l, c), random(r, b, l, c), random(r, b, c)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.AddMulRows(in[0], in[1], in[2]) },
	}
}

// unary is an elementwise op of flopsPer FLOPs per element.
func unary(name, opName string, flopsPer int64, shape []int, op func(o *core.Ops, x *core.Tensor) *core.Tensor) Kernel {
	n := numel(shape)
	return Kernel{
		Name:   name,
		Op:     opName,
		Shape:  dimsString(shape),
		FLOPs:  flopsPer * n,
		Bytes:  f32 * 2 * n,
		Inputs: func(r *core.RNG) []core.HostTensor { return []core.HostTensor{random(r, shape...)} },
		Run:    func(o *core.Ops, in []*core.Tensor) *core.Tensor { return op(o, in[0]) },
	}
}

// sliceLast takes q out of the fused qkv projection.
func sliceLast(rows, c, n int) Kernel {
	return Kernel{
		Name:   "slice-last",
		Op:     "SliceLast",
		Shape:  fmt.Sprintf("[%d,%d] -> [%d,%d]", rows, c, rows, n),
		Bytes:  f32 * 2 * int64(rows*n),
		Inputs: func(r *core.RNG) []core.HostTensor { return []core.HostTensor{random(r, rows, c)} },
		Run:    func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.SliceLast(in[0], 0, n) },
	}
}

// concat appends the last scale's keys to those of the earlier scales (as VAR's KV cache once grew).
func concat(b, cached, l, c int) Kernel {
	n := int64(b * (cached + l) * c)
	return Kernel{
		Name:  "concat",
		Op:    "Concat",
		Shape: fmt.Sprintf("[%d,%d,%d]+[%d,%d,%d]", b, cached, c, b, l, c),
		Bytes: f32 * 2 * n,
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, cached, c), random(r, b, l, c)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Concat(1, in[0], in[1]) },
	}
}

// zeros allocates one block's key (or value) cache at its full length.
func zeros(b, s, c int) Kernel {
	return Kernel{
		Name:   "zeros",
		Op:     "Zeros",
		Shape:  dimsString([]int{b, s, c}),
		Bytes:  f32 * int64(b*s*c),
		Inputs: func(r *core.RNG) []core.HostTensor { return []core.HostTensor{} },
		Run:    func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Zeros(b, s, c) },
	}
}

// writeRows writes the last scale's l keys into a cache of s rows, after the s-l of the earlier scales.
func writeRows(b, s, l, c int) Kernel {
	return Kernel{
		Name:  "write-rows",
		Op:    "WriteRows",
		Shape: fmt.Sprintf("[%d,%d,%d] -> rows %d.. of [%d,%d,%d]", b, l, c, s-l, b, s, c),
		Bytes: f32 * 2 * int64(b*l*c),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, s, c), random(r, b, l, c)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			o.WriteRows(in[0], in[1], s-l)
			return in[0]
		},
		InPlace: true,
	}
}

// groupNormSiLU is the VQVAE's norm (32 groups) fused with the SiLU that follows it in res blocks.
func groupNormSiLU(b, c, hw int) Kernel {
	n := int64(b * c * hw * hw)
	return Kernel{
		Name:  "groupnorm-silu",
		Op:    "GroupNorm",
		Shape: fmt.Sprintf("%s 32 groups", dimsString([]int{b, c, hw, hw})),
		FLOPs: 10 * n, // statistics 3, normalise and affine 3, SiLU 4
		Bytes: f32 * (2*n + 2*int64(c)),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, c, hw, hw), random(r, c), random(r, c)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			return o.GroupNorm(in[0], 32, in[1], in[2], 1e-6, true)
		},
	}
}

// conv3x3 is the VQVAE's 3x3, stride 1, padding 1 convolution with bias, co output channels.
func conv3x3(name string, b, ci, hw, co int) Kernel {
	B, Ci, Co, P := int64(b), int64(ci), int64(co), int64(hw*hw)
	return Kernel{
		Name:  name,
		Op:    "Conv2d",
		Shape: fmt.Sprintf("%s -> %d, 3x3", dimsString([]int{b, ci, hw, hw}), co),
		FLOPs: 2*B*Co*P*Ci*9 + B*Co*P,
		Bytes: f32 * (B*Ci*P + Co*Ci*9 + Co + B*Co*P),
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, ci, hw, hw), random(r, co, ci, 3, 3), random(r, co)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			return o.Conv2d(in[0], in[1], in[2], 1, [4]int{1, 1, 1, 1})
		},
	}
}

func upsample2x(b, c, hw int) Kernel {
	n := int64(b * c * hw * hw)
	return Kernel{
		Name:   "upsample2x",
		Op:     "Upsample2x",
		Shape:  fmt.Sprintf("%s -> %dx%d", dimsString([]int{b, c, hw, hw}), 2*hw, 2*hw),
		Bytes:  f32 * 5 * n,
		Inputs: func(r *core.RNG) []core.HostTensor { return []core.HostTensor{random(r, b, c, hw, hw)} },
		Run:    func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Upsample2x(in[0]) },
	}
}

// add is the res block's residual sum.
func add(b, c, hw int) Kernel {
	n := int64(b * c * hw * hw)
	return Kernel{
		Name:  "add",
		Op:    "Add",
		Shape: fmt.Sprintf("%s + same", dimsString([]int{b, c, hw, hw})),
		FLOPs: n,
		Bytes: f32 * 3 * n,
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, c, hw, hw), random(r, b, c, hw, hw)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Add(in[0], in[1]) },
	}
}

// transpose12 is the VQVAE attention's [B, 3C, HW] -> [B, HW, 3C] of its fused qkv.
func transpose12(a, m, n int) Kernel {
	return Kernel{
		Name:   "transpose12",
		Op:     "Transpose12",
		Shape:  fmt.Sprintf("%s -> [%d,%d,%d]", dimsString([]int{a, m, n}), a, n, m),
		Bytes:  f32 * 2 * int64(a*m*n),
		Inputs: func(r *core.RNG) []core.HostTensor { return []core.HostTensor{random(r, a, m, n)} },
		Run:    func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Transpose12(in[0]) },
	}
}

func bicubic(b, c, in, out int) Kernel {
	nIn, nOut := int64(b*c*in*in), int64(b*c*out*out)
	return Kernel{
		Name:   "bicubic",
		Op:     "ResizeBicubic",
		Shape:  fmt.Sprintf("%s -> %dx%d", dimsString([]int{b, c, in, in}), out, out),
		FLOPs:  2 * 16 * nOut, // 4x4 taps per output
		Bytes:  f32 * (nIn + nOut),
		Inputs: func(r *core.RNG) []core.HostTensor { return []core.HostTensor{random(r, b, c, in, in)} },
		Run:    func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.ResizeBicubic(in[0], out, out) },
	}
}

// areaFLOPs counts adaptive average pooling from in to out per side: one addition per input element of
// each output's window (windows overlap when out does not divide in) and one division per output.
func areaFLOPs(in, out int) int64 {
	var win1D int64 // sum over outputs of the window length, one dimension
	for i := 0; i < out; i++ {
		lo, hi := i*in/out, ((i+1)*in+out-1)/out
		win1D += int64(hi - lo)
	}
	return win1D*win1D + int64(out*out)
}

func area(b, c, in, out int) Kernel {
	nIn, nOut := int64(b*c*in*in), int64(b*c*out*out)
	return Kernel{
		Name:   "area",
		Op:     "ResizeArea",
		Shape:  fmt.Sprintf("%s -> %dx%d", dimsString([]int{b, c, in, in}), out, out),
		FLOPs:  int64(b*c) * areaFLOPs(in, out),
		Bytes:  f32 * (nIn + nOut),
		Inputs: func(r *core.RNG) []core.HostTensor { return []core.HostTensor{random(r, b, c, in, in)} },
		Run:    func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.ResizeArea(in[0], out, out) },
	}
}

// axpby is the quantizer's residual update rest - phi(h).
func axpby(b, c, hw int) Kernel {
	n := int64(b * c * hw * hw)
	return Kernel{
		Name:  "axpby",
		Op:    "Axpby",
		Shape: fmt.Sprintf("%s x2", dimsString([]int{b, c, hw, hw})),
		FLOPs: 3 * n,
		Bytes: f32 * 3 * n,
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, b, c, hw, hw), random(r, b, c, hw, hw)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Axpby(1, in[0], -1, in[1]) },
	}
}

func nearestCode(n, v, c int) Kernel {
	N, V, C := int64(n), int64(v), int64(c)
	return Kernel{
		Name:  "nearest-code",
		Op:    "NearestCode",
		Shape: fmt.Sprintf("z[%d,%d] codebook[%d,%d]", n, c, v, c),
		// A dot product per (row, code) plus the distance and the running argmin.
		FLOPs: N * V * (2*C + 3),
		Bytes: f32 * (N*C + V*C + N), // the ids are 4-byte words too
		Inputs: func(r *core.RNG) []core.HostTensor {
			return []core.HostTensor{random(r, n, c), random(r, v, c)}
		},
		Run: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			o.NearestCode(in[0], in[1]) // host ids: complete on return
			return nil
		},
	}
}

func embedding(n, v, c int) Kernel {
	// The ids are fixed when the case is built (not drawn from Inputs' RNG) because Run needs them as
	// host ints; a fixed seed keeps them the same on every backend.
	ids := make([]int, n)
	ir := core.NewRNG(uint64(n))
	for i := range ids {
		ids[i] = ir.Intn(v)
	}
	N, C := int64(n), int64(c)
	return Kernel{
		Name:   "embedding",
		Op:     "Embedding",
		Shape:  fmt.Sprintf("%d ids of [%d,%d]", n, v, c),
		Bytes:  f32 * (N + 2*N*C), // ids, the gathered rows, the output
		Inputs: func(r *core.RNG) []core.HostTensor { return []core.HostTensor{random(r, v, c)} },
		Run:    func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Embedding(in[0], ids) },
	}
}

// DefaultMinTime is how long a kernel's timed batch runs at least when KernelOptions.Reps is 0: long
// enough to average out timer resolution and scheduling noise, short enough that the d16 table of a slow
// device finishes in minutes.
const DefaultMinTime = 500 * time.Millisecond

// maxReps bounds the adaptive repetition count of very fast kernels.
const maxReps = 1 << 20

// KernelOptions configures RunKernels.
type KernelOptions struct {
	Size   string // SizeSmall or SizeD16; "" is SizeD16
	Filter string // see Select
	// Reps > 0 times exactly that many runs per kernel. 0 adapts: batches grow until one takes at least
	// MinTime (a kernel slower than MinTime is timed once).
	Reps    int
	MinTime time.Duration // 0: DefaultMinTime
	Device  string        // describes the device in results (CPUDevice, the WebGPU adapter)
	Seed    uint64        // input data seed
	// Log, when set, receives a progress line before each kernel (a d16 kernel may take seconds).
	Log io.Writer
	// OnResult, when set, receives each result as soon as it is measured, so that callers can print rows
	// while the rest still run.
	OnResult func(KernelResult)
}

// KernelResult is the speed of one kernel on one backend. The JSON field names are part of the
// `webvar bench -json` output.
type KernelResult struct {
	Backend string  `json:"backend"`
	Device  string  `json:"device"`
	Kernel  string  `json:"kernel"`
	Shape   string  `json:"shape"`
	FLOPs   int64   `json:"flops"`
	Bytes   int64   `json:"bytes"`
	Reps    int     `json:"reps"`    // timed runs
	Seconds float64 `json:"seconds"` // per run, including completion on asynchronous backends
	GFLOPS  float64 `json:"gflops"`
	GBPS    float64 `json:"gbps"`
	Error   string  `json:"error,omitempty"` // the kernel failed; the numbers are zero
}

// RunKernels times the selected kernels on b. Each kernel's inputs are uploaded once; one untimed run
// compiles pipelines and fills buffer pools; then a batch of runs is timed from the first op to the
// readback of one element of the last output. Backends that queue work (WebGPU) have therefore finished
// every run when the clock stops, and the readback's cost is included rather than estimated and
// subtracted: with enough runs per batch it is negligible.
//
// A kernel that fails is reported with Error set and the others still run; the returned error then joins
// the failures. Invalid options fail before anything runs.
func RunKernels(b core.Backend, opt KernelOptions) ([]KernelResult, error) {
	if b == nil {
		return nil, errors.New("bench: nil backend")
	}
	if opt.Size == "" {
		opt.Size = SizeD16
	}
	if opt.Reps < 0 {
		return nil, fmt.Errorf("bench: reps %d: want >= 0 (0 adapts)", opt.Reps)
	}
	if opt.MinTime <= 0 {
		opt.MinTime = DefaultMinTime
	}
	ks, err := Select(opt.Size, opt.Filter)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var results []KernelResult
	var errs []error
	for i, k := range ks {
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, "bench %s %d/%d: %s %s\n", b.Name(), i+1, len(ks), k.Name, k.Shape)
		}
		r := KernelResult{Backend: b.Name(), Device: opt.Device, Kernel: k.Name, Shape: k.Shape, FLOPs: k.FLOPs, Bytes: k.Bytes}
		perRun, reps, err := timeKernel(b, k, opt)
		if err != nil {
			r.Error = err.Error()
			errs = append(errs, fmt.Errorf("%s on %s: %w", k.Name, b.Name(), err))
		} else {
			r.Reps, r.Seconds = reps, perRun
			if perRun > 0 {
				r.GFLOPS = float64(k.FLOPs) / perRun / 1e9
				r.GBPS = float64(k.Bytes) / perRun / 1e9
			}
		}
		if opt.OnResult != nil {
			opt.OnResult(r)
		}
		results = append(results, r)
	}
	return results, errors.Join(errs...)
}

// timeKernel returns the seconds per run of k on b and the number of timed runs.
func timeKernel(b core.Backend, k Kernel, opt KernelOptions) (float64, int, error) {
	// A fresh Ops per kernel: its error is sticky, and one unsupported op must not stop the others.
	o := core.NewOps(b)
	hosts := k.Inputs(core.NewRNG(opt.Seed))
	in := make([]*core.Tensor, len(hosts))
	if k.Upload != nil {
		var err error
		if in, err = k.Upload(b, hosts); err != nil {
			return 0, 0, err
		}
	} else {
		for i, h := range hosts {
			in[i] = o.Upload(h)
		}
	}
	defer o.Free(in...)
	if err := o.Err(); err != nil {
		return 0, 0, err
	}
	if _, err := timeBatch(o, k, in, 1); err != nil { // warm-up
		return 0, 0, err
	}
	n := opt.Reps
	if n > 0 {
		d, err := timeBatch(o, k, in, n)
		return d.Seconds() / float64(n), n, err
	}
	// Adaptive, like testing.B: grow the batch from the last one's speed, aiming 20% past MinTime but
	// growing at most 100x at once, so a first run slowed by a hiccup cannot make the batch absurdly long.
	n = 1
	for {
		d, err := timeBatch(o, k, in, n)
		if err != nil {
			return 0, 0, err
		}
		if d >= opt.MinTime || n >= maxReps {
			return d.Seconds() / float64(n), n, nil
		}
		next := maxReps
		if d > 0 {
			next = int(1.2 * float64(opt.MinTime) / float64(d) * float64(n))
		}
		n = min(max(next, n+1), 100*n, maxReps)
	}
}

// timeBatch runs k n times and returns the time from the first op until one element of the last output
// is back on the host.
func timeBatch(o *core.Ops, k Kernel, in []*core.Tensor, n int) (time.Duration, error) {
	start := time.Now()
	var out *core.Tensor
	for range n {
		// The previous output is freed before the next op, as models free dead tensors: a pooling backend
		// then reuses its buffer, and memory stays flat however many runs are queued.
		if !k.InPlace {
			o.Free(out)
		}
		out = k.Run(o, in)
	}
	if out != nil {
		// A one-element slice of the output depends on the last run; downloading it waits for the queue
		// without timing the transfer of a large output.
		one := o.SliceLast(o.Reshape(out, out.Shape().Numel()), 0, 1)
		o.Download(one)
		o.Free(one)
		if !k.InPlace {
			o.Free(out)
		}
	}
	d := time.Since(start)
	return d, o.Err()
}

// CPUDevice describes the CPU backend's device: the processor model (from /proc/cpuinfo where readable,
// else the architecture) and the thread count, threads <= 0 meaning runtime.NumCPU() as in cpu.New.
func CPUDevice(threads int) string {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	model := cpuModel("/proc/cpuinfo")
	if model == "" {
		model = runtime.GOARCH + " CPU"
	}
	return fmt.Sprintf("%s, %d threads", model, threads)
}

// cpuModel returns the first model name in a /proc/cpuinfo-style file, or "" if there is none.
func cpuModel(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, val, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		// x86 says "model name"; some ARM kernels only say "Hardware" or "Processor".
		switch strings.TrimSpace(key) {
		case "model name", "Hardware", "Processor", "cpu model":
			if v := strings.TrimSpace(val); v != "" {
				return v
			}
		}
	}
	return ""
}
