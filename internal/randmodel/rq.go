package randmodel

import (
	"fmt"

	"github.com/webvar/webvar/core/rq"
)

// RQSpec is an RQ-Transformer (stage 2) in the official layout (rqtransformer/transformers.py): width C,
// Body and Head layers of GPT-2 blocks (separate query/key/value/proj, MLP 4C), an H x W map of D codes
// from a codebook of V codes of width Embed, Classes class embeddings.
type RQSpec struct {
	C, BodyLayers, HeadLayers, Heads int
	H, W, D, V, Embed, Classes       int
}

// RQVAESpec is the RQ-VAE (stage 1): the taming-layout coder (base width Ch times Mult per level, NumRes
// res blocks per encoder level and NumRes+1 per decoder level, attention at the coarsest level and in
// mid, separate q/k/v), Z coder channels, Embed code width, a shared codebook of V codes (plus the padding
// row).
type RQVAESpec struct {
	Ch       int
	Mult     []int
	NumRes   int
	Z, Embed int
	V        int
	Encoder  bool
}

// OfficialRQ returns the released ImageNet models' shapes, from the official configs
// (configs/imagenet256/stage2/in256-rqtransformer-8x8x4-480M.yaml and -1400M.yaml, stage1/in256-rqvae-8x8x4.yaml):
// 8 x 8 x 4 codes of 16384, width 1536 and 24 heads, 12 + 4 layers for "480m" and 42 + 6 for "1400m"; and
// the RQ-VAE (ch 128, ch_mult 1,1,2,2,4,4, two res blocks, attention at 8x8, z 256, 256-wide codes).
func OfficialRQ(size string) (RQSpec, RQVAESpec, error) {
	s := RQSpec{H: 8, W: 8, D: 4, V: 16384, Embed: 256, Classes: 1000}
	switch size {
	case "480m":
		s.C, s.BodyLayers, s.HeadLayers, s.Heads = 1536, 12, 4, 24
	case "1400m":
		s.C, s.BodyLayers, s.HeadLayers, s.Heads = 1536, 42, 6, 24
	default:
		return s, RQVAESpec{}, fmt.Errorf("RQ size %q: want 480m or 1400m", size)
	}
	return s, RQVAESpec{Ch: 128, Mult: []int{1, 1, 2, 2, 4, 4}, NumRes: 2, Z: 256, Embed: 256, V: 16384, Encoder: true}, nil
}

// RQTensors lists stage 2's tensors: rq.Tensors' table with linearNormValues' distributions.
func RQTensors(s RQSpec) []Tensor {
	stack := func(layers int) rq.StackConfig {
		return rq.StackConfig{Layers: layers, Heads: s.Heads, FFN: 4 * s.C, AttnBias: true, MLPBias: true}
	}
	t := rq.Tensors(rq.Config{H: s.H, W: s.W, D: s.D, C: s.C, V: s.V, CondRows: s.Classes, InEmbed: s.Embed,
		Body: stack(s.BodyLayers), Head: stack(s.HeadLayers)})
	return fromTable(t, linearNormValues(t))
}

// RQVAETensors lists stage 1's tensors (coderTensors' distributions; the codebook of unit scale).
func RQVAETensors(s RQVAESpec) []Tensor {
	c := &coderTensors{}
	c.taming(tamingSpec{Ch: s.Ch, Mult: s.Mult, NumRes: s.NumRes, Encoder: s.Encoder, EncOut: s.Z, DecIn: s.Z, DecAttnTop: true,
		QKV: separateQKV})
	if s.Encoder {
		c.conv("quant_conv", s.Embed, s.Z, 1)
	}
	c.conv("post_quant_conv", s.Z, s.Embed, 1)
	// The shared codebook once (the official state dict repeats it per depth; the loader takes either).
	return append(c.ts, Tensor{Name: "quantizer.codebooks.0.weight", Shape: []int{s.V + 1, s.Embed}, Std: 1})
}
