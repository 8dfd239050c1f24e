package randmodel

import (
	"fmt"
	"math"
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

// MARTensors lists the model's tensors: Linear weights with std 1/sqrt(fan_in) (so activations keep
// their scale through the depth), LayerNorm affines near identity, embeddings of std 0.02.
func MARTensors(s MARSpec) []Tensor {
	var ts []Tensor
	lin := func(name string, out, in int) {
		ts = append(ts, Tensor{Name: name + ".weight", Shape: []int{out, in}, Std: 1 / math.Sqrt(float64(in))},
			Tensor{Name: name + ".bias", Shape: []int{out}, Std: 0.02})
	}
	ln := func(name string, c int) {
		ts = append(ts, Tensor{Name: name + ".weight", Shape: []int{c}, Std: 0.05, Mean: 1},
			Tensor{Name: name + ".bias", Shape: []int{c}, Std: 0.05})
	}
	emb := func(name string, shape ...int) { ts = append(ts, Tensor{Name: name, Shape: shape, Std: 0.02}) }
	blocks := func(prefix string) {
		for i := range s.Depth {
			p := fmt.Sprintf("%s.%d.", prefix, i)
			ln(p+"norm1", s.C)
			lin(p+"attn.qkv", 3*s.C, s.C)
			lin(p+"attn.proj", s.C, s.C)
			ln(p+"norm2", s.C)
			lin(p+"mlp.fc1", 4*s.C, s.C)
			lin(p+"mlp.fc2", s.C, 4*s.C)
		}
	}
	P := s.Buffer + s.SeqLen
	lin("z_proj", s.C, s.Ct)
	ln("z_proj_ln", s.C)
	emb("class_emb.weight", s.Classes, s.C)
	emb("fake_latent", 1, s.C)
	emb("encoder_pos_embed_learned", 1, P, s.C)
	blocks("encoder_blocks")
	ln("encoder_norm", s.C)
	lin("decoder_embed", s.C, s.C)
	emb("mask_token", 1, 1, s.C)
	emb("decoder_pos_embed_learned", 1, P, s.C)
	blocks("decoder_blocks")
	ln("decoder_norm", s.C)
	emb("diffusion_pos_embed_learned", 1, s.SeqLen, s.C)
	const d = "diffloss.net."
	W := s.DiffW
	lin(d+"time_embed.mlp.0", W, 256)
	lin(d+"time_embed.mlp.2", W, W)
	lin(d+"cond_embed", W, s.C)
	lin(d+"input_proj", W, s.Ct)
	for i := range s.DiffDepth {
		p := fmt.Sprintf("%sres_blocks.%d.", d, i)
		ln(p+"in_ln", W)
		lin(p+"mlp.0", W, W)
		lin(p+"mlp.2", W, W)
		lin(p+"adaLN_modulation.1", 3*W, W)
	}
	lin(d+"final_layer.linear", 2*s.Ct, W)
	lin(d+"final_layer.adaLN_modulation.1", 2*W, W)
	return ts
}

// KLVAETensors lists the VAE's tensors (coderTensors' distributions).
func KLVAETensors(s KLVAESpec) []Tensor {
	c := &coderTensors{}
	c.taming(tamingSpec{Ch: s.Ch, Mult: s.Mult, NumRes: s.NumRes, Encoder: s.Encoder, EncOut: 2 * s.Embed, DecIn: s.Embed})
	if s.Encoder {
		c.conv("quant_conv", 2*s.Embed, 2*s.Embed, 1)
	}
	c.conv("post_quant_conv", s.Embed, s.Embed, 1)
	return c.ts
}

// tamingSpec is a taming-layout encoder/decoder pair with separate q/k/v attention convs: attention at the
// encoder's coarsest level and in both mids, and at the decoder's coarsest level with DecAttnTop.
type tamingSpec struct {
	Ch            int
	Mult          []int
	NumRes        int
	Encoder       bool
	EncOut, DecIn int // the encoder's conv_out channels, the decoder's conv_in input channels
	DecAttnTop    bool
}

// taming adds the coder's tensors (the encoder only with s.Encoder).
func (c *coderTensors) taming(s tamingSpec) {
	conv, norm, res := c.conv, c.norm, c.res
	attn := func(name string, ch int) { c.attn(name, ch, ".q", ".k", ".v") }
	mid := func(p string, ch int) {
		res(p+".mid.block_1", ch, ch)
		attn(p+".mid.attn_1", ch)
		res(p+".mid.block_2", ch, ch)
	}
	n := len(s.Mult)
	top := s.Ch * s.Mult[n-1]
	if s.Encoder {
		conv("encoder.conv_in", s.Ch, 3, 3)
		in := s.Ch
		for i := range n {
			out := s.Ch * s.Mult[i]
			for j := range s.NumRes {
				res(fmt.Sprintf("encoder.down.%d.block.%d", i, j), in, out)
				in = out
				if i == n-1 {
					attn(fmt.Sprintf("encoder.down.%d.attn.%d", i, j), in)
				}
			}
			if i != n-1 {
				conv(fmt.Sprintf("encoder.down.%d.downsample.conv", i), in, in, 3)
			}
		}
		mid("encoder", in)
		norm("encoder.norm_out", in)
		conv("encoder.conv_out", s.EncOut, in, 3)
	}
	conv("decoder.conv_in", top, s.DecIn, 3)
	mid("decoder", top)
	in := top
	for i := n - 1; i >= 0; i-- {
		out := s.Ch * s.Mult[i]
		for j := range s.NumRes + 1 {
			res(fmt.Sprintf("decoder.up.%d.block.%d", i, j), in, out)
			in = out
			if i == n-1 && s.DecAttnTop {
				attn(fmt.Sprintf("decoder.up.%d.attn.%d", i, j), in)
			}
		}
		if i != 0 {
			conv(fmt.Sprintf("decoder.up.%d.upsample.conv", i), in, in, 3)
		}
	}
	norm("decoder.norm_out", in)
	conv("decoder.conv_out", 3, in, 3)
}
