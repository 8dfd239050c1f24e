// Package randmodel describes checkpoints in the official VAR key layout with random values: real-size
// models for measuring speed, memory and download size without the official weights (none of these
// depends on training), and small variants for tests that the var-tiny fixture does not cover.
//
// A checkpoint is a list of Tensor (name, shape, distribution). Source serves such a list as a
// core.WeightSource that draws each tensor when it is loaded, from a seed derived from the tensor's name:
// a multi-gigabyte model is never held twice in memory, and the values do not depend on the order in
// which a model reads its tensors. internal/tools/mkrandom writes the same lists to safetensors files.
package randmodel

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/vqvae"
)

// Tensor is one checkpoint tensor and the distribution of its values: normal with Std and Mean, or, when
// LogUniform is set, log(U(Lo, Hi)) (VAR's attention scale_mul_1H11 is initialised that way in the
// fixture's perturbation; a normal draw could make a head's temperature unrealistically small).
type Tensor struct {
	Name       string
	Shape      []int
	Std, Mean  float64
	LogUniform bool
	Lo, Hi     float64 // the range of the uniform, with LogUniform
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Values draws the tensor's values. The stream depends only on seed and the tensor's name.
func (t Tensor) Values(seed uint64) []float32 {
	h := fnv.New64a()
	h.Write([]byte(t.Name))
	r := rand.New(rand.NewPCG(seed, h.Sum64()))
	d := make([]float32, numel(t.Shape))
	switch {
	case t.LogUniform:
		for i := range d {
			d[i] = float32(math.Log(t.Lo + (t.Hi-t.Lo)*r.Float64()))
		}
	case t.Std == 0:
		for i := range d {
			d[i] = float32(t.Mean)
		}
	default:
		for i := range d {
			d[i] = float32(t.Mean + t.Std*r.NormFloat64())
		}
	}
	return d
}

// VARSpec is a VAR transformer in the official layout (models/var.py): width C, Heads heads, an MLP of
// 4C, Classes classes plus the null class, codebook V, latent Cvae, one scale per PatchNums entry.
type VARSpec struct {
	Depth, C, Heads, Classes, V, Cvae int
	PatchNums                         []int
	// SharedAdaLN: one shared_ada_lin plus a per-block ada_gss (VAR-d36) instead of ada_lin per block.
	SharedAdaLN bool
	// L2NormAttn: cosine attention with a learned per-head scale (every released VAR model).
	L2NormAttn bool
}

// Official returns VAR-d{depth} for 256x256 images as released: width 64*depth, heads = depth, l2-norm
// attention, 1000 ImageNet classes, codebook 4096 of width 32, ten scales 1..16; and its VQVAE
// (vae_ch160v4096z32: ch 160, ch_mult 1,1,2,2,4, two res blocks per level, 4 partially shared Phis).
func Official(depth int) (VARSpec, VAESpec) {
	pn := []int{1, 2, 3, 4, 5, 6, 8, 10, 13, 16}
	return VARSpec{Depth: depth, C: 64 * depth, Heads: depth, Classes: 1000, V: 4096, Cvae: 32, PatchNums: pn, L2NormAttn: true},
		VAESpec{Ch: 160, Mult: []int{1, 1, 2, 2, 4}, NumRes: 2, V: 4096, Cvae: 32, Scales: len(pn),
			Phi: vqvae.PhiPartiallyShared, PhiCount: 4, Encoder: true}
}

// VARTensors lists the transformer's tensors: varmodel.Tensors' table with adaLNValues' distributions,
// and the buffers the models derive (lvl_1L, attn_bias_for_masking) as zeros, as in the official
// checkpoints.
func VARTensors(s VARSpec) []Tensor {
	l := 0
	for _, p := range s.PatchNums {
		l += p * p
	}
	ts := fromTable(varmodel.Tensors(varmodel.Config{Depth: s.Depth, C: s.C, Heads: s.Heads, FFN: 4 * s.C, Cvae: s.Cvae,
		V: s.V, Classes: s.Classes, SharedAdaLN: s.SharedAdaLN, L2NormAttn: s.L2NormAttn, PatchNums: s.PatchNums, L: l}), adaLNValues)
	// The buffers after the positions, where the official state dict has them.
	buffers := []Tensor{{Name: "lvl_1L", Shape: []int{1, l}}, {Name: "attn_bias_for_masking", Shape: []int{1, 1, l, l}}}
	return slices.Insert(ts, 2, buffers...)
}

// VAESpec is VAR's VQVAE (models/vqvae.py with the taming/LDM encoder and decoder of basic_vae.py): base
// width Ch times Mult per level, NumRes res blocks per encoder level and NumRes+1 per decoder level,
// self-attention after every block of the coarsest level and in mid, codebook V of width Cvae, PhiCount
// residual convs in the Phi layout, and the training statistics of Scales scales.
type VAESpec struct {
	Ch       int
	Mult     []int
	NumRes   int
	V, Cvae  int
	Scales   int
	Phi      vqvae.PhiLayout
	PhiCount int // ignored for PhiIdentity and PhiShared (one conv)
	// Encoder includes the encoder and quant_conv; generation only decodes, so a benchmark can leave
	// them out, as `webvar convert -no-encoder` does.
	Encoder bool
}

// coderTensors collects the tensors of a conv encoder/decoder: convs with std 1/sqrt(fan_in), GroupNorm
// affines near identity, so that every layer's output stays of unit scale whatever the depth.
type coderTensors struct{ ts []Tensor }

func (c *coderTensors) conv(name string, out, in, k int) {
	c.ts = append(c.ts, Tensor{Name: name + ".weight", Shape: []int{out, in, k, k}, Std: 1 / math.Sqrt(float64(in*k*k))},
		Tensor{Name: name + ".bias", Shape: []int{out}, Std: 0.02})
}

func (c *coderTensors) norm(name string, ch int) {
	c.ts = append(c.ts, Tensor{Name: name + ".weight", Shape: []int{ch}, Std: 0.1, Mean: 1},
		Tensor{Name: name + ".bias", Shape: []int{ch}, Std: 0.1})
}

// res is a res block; a 1x1 nin_shortcut when the channels change.
func (c *coderTensors) res(name string, in, out int) {
	c.norm(name+".norm1", in)
	c.conv(name+".conv1", out, in, 3)
	c.norm(name+".norm2", out)
	c.conv(name+".conv2", out, out, 3)
	if in != out {
		c.conv(name+".nin_shortcut", out, in, 1)
	}
}

// attn is an attention block: its 1x1 convs named by parts (".qkv" fused, or ".q", ".k", ".v").
func (c *coderTensors) attn(name string, ch int, parts ...string) {
	c.norm(name+".norm", ch)
	for _, p := range parts {
		mult := 1
		if p == ".qkv" {
			mult = 3
		}
		c.conv(name+p, mult*ch, ch, 1)
	}
	c.conv(name+".proj_out", ch, ch, 1)
}

// tamingSpec is a taming-layout (LDM) encoder/decoder pair: attention at the encoder's coarsest level
// and in both mids, and at the decoder's coarsest level with DecAttnTop; the attention's 1x1 convs are
// named by QKV (coderTensors.attn: ".qkv" fused, or ".q", ".k", ".v").
type tamingSpec struct {
	Ch            int
	Mult          []int
	NumRes        int
	Encoder       bool
	EncOut, DecIn int // the encoder's conv_out channels, the decoder's conv_in input channels
	DecAttnTop    bool
	QKV           []string
}

// separateQKV names the attention's q, k and v 1x1 convs one by one (the LDM and RQ-VAE layouts).
var separateQKV = []string{".q", ".k", ".v"}

// taming adds the coder's tensors (the encoder only with s.Encoder).
func (c *coderTensors) taming(s tamingSpec) {
	if s.Encoder {
		c.tamingEncoder(s)
	}
	c.tamingDecoder(s)
}

// tamingMid adds p's mid: res, attention, res at ch channels.
func (c *coderTensors) tamingMid(s tamingSpec, p string, ch int) {
	c.res(p+".mid.block_1", ch, ch)
	c.attn(p+".mid.attn_1", ch, s.QKV...)
	c.res(p+".mid.block_2", ch, ch)
}

// tamingEncoder adds the encoder's tensors, up to encoder.conv_out.
func (c *coderTensors) tamingEncoder(s tamingSpec) {
	n := len(s.Mult)
	c.conv("encoder.conv_in", s.Ch, 3, 3)
	in := s.Ch
	for i := range n {
		out := s.Ch * s.Mult[i]
		for j := range s.NumRes {
			c.res(fmt.Sprintf("encoder.down.%d.block.%d", i, j), in, out)
			in = out
			if i == n-1 {
				c.attn(fmt.Sprintf("encoder.down.%d.attn.%d", i, j), in, s.QKV...)
			}
		}
		if i != n-1 {
			c.conv(fmt.Sprintf("encoder.down.%d.downsample.conv", i), in, in, 3)
		}
	}
	c.tamingMid(s, "encoder", in)
	c.norm("encoder.norm_out", in)
	c.conv("encoder.conv_out", s.EncOut, in, 3)
}

// tamingDecoder adds the decoder's tensors, from decoder.conv_in.
func (c *coderTensors) tamingDecoder(s tamingSpec) {
	n := len(s.Mult)
	top := s.Ch * s.Mult[n-1]
	c.conv("decoder.conv_in", top, s.DecIn, 3)
	c.tamingMid(s, "decoder", top)
	in := top
	for i := n - 1; i >= 0; i-- {
		out := s.Ch * s.Mult[i]
		for j := range s.NumRes + 1 {
			c.res(fmt.Sprintf("decoder.up.%d.block.%d", i, j), in, out)
			in = out
			if i == n-1 && s.DecAttnTop {
				c.attn(fmt.Sprintf("decoder.up.%d.attn.%d", i, j), in, s.QKV...)
			}
		}
		if i != 0 {
			c.conv(fmt.Sprintf("decoder.up.%d.upsample.conv", i), in, in, 3)
		}
	}
	c.norm("decoder.norm_out", in)
	c.conv("decoder.conv_out", 3, in, 3)
}

// VAETensors lists the VQVAE's tensors (coderTensors' distributions): the taming layout with fused
// qkv attention convs.
func VAETensors(s VAESpec) []Tensor {
	c := &coderTensors{}
	coder := tamingSpec{Ch: s.Ch, Mult: s.Mult, NumRes: s.NumRes, EncOut: s.Cvae, DecIn: s.Cvae, DecAttnTop: true,
		QKV: []string{".qkv"}}
	if s.Encoder {
		c.tamingEncoder(coder)
		c.conv("quant_conv", s.Cvae, s.Cvae, 3)
	}
	c.tamingDecoder(coder)
	c.conv("post_quant_conv", s.Cvae, s.Cvae, 3)
	c.ts = append(c.ts, Tensor{Name: "quantize.embedding.weight", Shape: []int{s.V, s.Cvae}, Std: 0.5},
		Tensor{Name: "quantize.ema_vocab_hit_SV", Shape: []int{s.Scales, s.V}})
	switch s.Phi {
	case vqvae.PhiShared:
		c.conv("quantize.quant_resi.qresi", s.Cvae, s.Cvae, 3)
	case vqvae.PhiPartiallyShared:
		for i := 0; i < s.PhiCount; i++ {
			c.conv(fmt.Sprintf("quantize.quant_resi.qresi_ls.%d", i), s.Cvae, s.Cvae, 3)
		}
	case vqvae.PhiNonShared:
		for i := 0; i < s.PhiCount; i++ {
			c.conv(fmt.Sprintf("quantize.quant_resi.%d", i), s.Cvae, s.Cvae, 3)
		}
	}
	return c.ts
}

// Source is a core.WeightSource over a tensor list that draws each tensor when it is loaded (see
// Tensor.Values). It holds no tensor data, so loading a model through it peaks at the model's own
// memory plus one tensor.
type Source struct {
	seed    uint64
	byName  map[string]Tensor
	ordered []string
}

// NewSource serves ts with values drawn from seed. Names must be unique.
func NewSource(ts []Tensor, seed uint64) (*Source, error) {
	s := &Source{seed: seed, byName: make(map[string]Tensor, len(ts))}
	for _, t := range ts {
		if _, dup := s.byName[t.Name]; dup {
			return nil, fmt.Errorf("randmodel: tensor %q listed twice", t.Name)
		}
		s.byName[t.Name] = t
		s.ordered = append(s.ordered, t.Name)
	}
	sort.Strings(s.ordered)
	return s, nil
}

func (s *Source) Names() []string { return append([]string(nil), s.ordered...) }

func (s *Source) Shape(name string) (core.Shape, bool) {
	t, ok := s.byName[name]
	return core.Shape(t.Shape).Clone(), ok
}

func (s *Source) Load(name string) (core.HostTensor, error) {
	t, ok := s.byName[name]
	if !ok {
		return core.HostTensor{}, fmt.Errorf("missing tensor %q", name)
	}
	return core.HostTensor{Shape: core.Shape(t.Shape).Clone(), Data: t.Values(s.seed)}, nil
}

// Map draws every tensor at once into a core.MapSource, for tests that read or modify the values.
func Map(ts []Tensor, seed uint64) core.MapSource {
	m := core.MapSource{}
	for _, t := range ts {
		m[t.Name] = core.HostTensor{Shape: core.Shape(t.Shape).Clone(), Data: t.Values(seed)}
	}
	return m
}

// Bytes is the f32 size of the tensors' data.
func Bytes(ts []Tensor) int64 {
	var n int64
	for _, t := range ts {
		n += 4 * int64(numel(t.Shape))
	}
	return n
}

// Seeds of the official-shaped random models, shared by `webvar bench -model d16` and mkrandom so that a
// written checkpoint holds the values the benchmark ran on.
const (
	SeedVAR uint64 = 1
	SeedVAE uint64 = 2
)
