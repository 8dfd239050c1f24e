package randmodel

import (
	"fmt"

	"github.com/webvar/webvar/core/mar"
	"github.com/webvar/webvar/core/nn"
)

// MARSpec is a MAR model in the official layout (models/mar.py with its DiffLoss): an MAE-style encoder
// and decoder of pre-LN ViT blocks (width C, Depth each, an MLP of 4C), Buffer class-embedding slots,
// SeqLen tokens of Ct values, and the SimpleMLPAdaLN diffusion head (DiffDepth res blocks of DiffW).
type MARSpec struct {
	Depth, C, Classes, Buffer, SeqLen, Ct int
	DiffDepth, DiffW                      int
}

// KLVAESpec is the LDM AutoencoderKL of MAR (KL-16): base width Ch times Mult per level, NumRes res
// blocks per encoder level and NumRes+1 per decoder level, attention at the coarsest encoder level and in
// both mids (separate q/k/v 1x1 convs), Embed latent channels.
type KLVAESpec struct {
	Ch      int
	Mult    []int
	NumRes  int
	Embed   int
	Encoder bool
}

// OfficialMAR returns MAR-B/L/H as released (width 768/1024/1280, depth 12/16/20 for both encoder and
// decoder, buffer 64, 256 tokens of 16 values, 1000 classes, diffusion MLP 6 x 1024 / 8 x 1280 /
// 12 x 1536) and the KL-16 VAE (ch 128, ch_mult 1,1,2,2,4, two res blocks, embed 16).
func OfficialMAR(size string) (MARSpec, KLVAESpec, error) {
	s := MARSpec{Classes: 1000, Buffer: 64, SeqLen: 256, Ct: 16}
	switch size {
	case "b":
		s.Depth, s.C, s.DiffDepth, s.DiffW = 12, 768, 6, 1024
	case "l":
		s.Depth, s.C, s.DiffDepth, s.DiffW = 16, 1024, 8, 1280
	case "h":
		s.Depth, s.C, s.DiffDepth, s.DiffW = 20, 1280, 12, 1536
	default:
		return s, KLVAESpec{}, fmt.Errorf("MAR size %q: want b, l or h", size)
	}
	return s, KLVAESpec{Ch: 128, Mult: []int{1, 1, 2, 2, 4}, NumRes: 2, Embed: 16, Encoder: true}, nil
}

// MARTensors lists the model's tensors: mar.Tensors' table with linearNormValues' distributions.
func MARTensors(s MARSpec) []Tensor {
	enc := nn.PreNormConfig{Depth: s.Depth, C: s.C, Heads: max(1, s.C/64), FFN: 4 * s.C}
	t := mar.Tensors(mar.Config{Enc: enc, Dec: enc, Ct: s.Ct, Classes: s.Classes, Buffer: s.Buffer, SeqLen: s.SeqLen,
		DiffW: s.DiffW, DiffDepth: s.DiffDepth, FreqSize: 256})
	return fromTable(t, linearNormValues(t))
}

// KLVAETensors lists the VAE's tensors (coderTensors' distributions).
func KLVAETensors(s KLVAESpec) []Tensor {
	c := &coderTensors{}
	c.taming(tamingSpec{Ch: s.Ch, Mult: s.Mult, NumRes: s.NumRes, Encoder: s.Encoder, EncOut: 2 * s.Embed, DecIn: s.Embed,
		QKV: separateQKV})
	if s.Encoder {
		c.conv("quant_conv", 2*s.Embed, 2*s.Embed, 1)
	}
	c.conv("post_quant_conv", s.Embed, s.Embed, 1)
	return c.ts
}
