package randmodel

import (
	"fmt"

	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/core/nn"
)

// FlexVARSpec is a FlexVAR transformer in the official layout (models/flexvar.py): VAR's blocks and head
// with a learned 2-D position grid pos_1LC [1, C, PosSide, PosSide] instead of VAR's per-token table and
// level embedding.
type FlexVARSpec struct {
	Depth, C, Heads, Classes, V, Cvae int
	PosSide                           int
	TrainL                            int // tokens of the training schedule (the attn_bias_for_masking buffer)
}

// LlamaGenVQSpec is LlamaGen's VQModel (models/vq_llama.py), FlexVAR's tokenizer: base width Ch times
// Mult per level, NumRes res blocks per encoder level and NumRes+1 per decoder level, attention at the
// coarsest level of both and in mid, separate q/k/v 1x1 convs, Z coder channels, a codebook V x Cvae.
type LlamaGenVQSpec struct {
	Ch      int
	Mult    []int
	NumRes  int
	Z       int
	V, Cvae int
	Encoder bool
}

// OfficialFlexVAR returns FlexVAR-d{depth} as released (width 64*depth, heads = depth, 1000 classes,
// 8912 codes of width 32, a 32 x 32 position grid; trained on the 10-step 256 px schedule, L = 680) and
// FlexVAE (ch 128, ch_mult 1,1,2,2,4, two res blocks, z 256).
func OfficialFlexVAR(depth int) (FlexVARSpec, LlamaGenVQSpec) {
	return FlexVARSpec{Depth: depth, C: 64 * depth, Heads: depth, Classes: 1000, V: 8912, Cvae: 32, PosSide: 32, TrainL: 680},
		LlamaGenVQSpec{Ch: 128, Mult: []int{1, 1, 2, 2, 4}, NumRes: 2, Z: 256, V: 8912, Cvae: 32, Encoder: true}
}

// FlexVARTensors lists the transformer's tensors: flexvar.Tensors' table with adaLNValues'
// distributions, and the training schedule's attn_bias_for_masking as zeros.
func FlexVARTensors(s FlexVARSpec) []Tensor {
	ts := fromTable(flexvar.Tensors(flexvar.Config{AdaLNConfig: nn.AdaLNConfig{Depth: s.Depth, C: s.C, Heads: s.Heads, FFN: 4 * s.C,
		L2NormAttn: true}, Cvae: s.Cvae, V: s.V, Classes: s.Classes, PosH: s.PosSide, PosW: s.PosSide}), adaLNValues)
	return append(ts, Tensor{Name: "attn_bias_for_masking", Shape: []int{1, 1, s.TrainL, s.TrainL}})
}

// LlamaGenVQTensors lists the tokenizer's tensors, with VAETensors' distributions.
func LlamaGenVQTensors(s LlamaGenVQSpec) []Tensor {
	c := &coderTensors{}
	conv, norm, res := c.conv, c.norm, c.res
	attn := func(name string, ch int) { c.attn(name, ch, ".q", ".k", ".v") }
	mid := func(p string, c int) {
		res(p+".mid.0", c, c)
		attn(p+".mid.1", c)
		res(p+".mid.2", c, c)
	}
	n := len(s.Mult)
	top := s.Ch * s.Mult[n-1]
	if s.Encoder {
		conv("encoder.conv_in", s.Ch, 3, 3)
		in := s.Ch
		for i := 0; i < n; i++ {
			out := s.Ch * s.Mult[i]
			for j := 0; j < s.NumRes; j++ {
				res(fmt.Sprintf("encoder.conv_blocks.%d.res.%d", i, j), in, out)
				in = out
				if i == n-1 {
					attn(fmt.Sprintf("encoder.conv_blocks.%d.attn.%d", i, j), in)
				}
			}
			if i != n-1 {
				conv(fmt.Sprintf("encoder.conv_blocks.%d.downsample.conv", i), in, in, 3)
			}
		}
		mid("encoder", in)
		norm("encoder.norm_out", in)
		conv("encoder.conv_out", s.Z, in, 3)
		conv("quant_conv", s.Cvae, s.Z, 1)
	}
	conv("decoder.conv_in", top, s.Z, 3)
	mid("decoder", top)
	in := top
	// Decoder level 0 is the coarsest in LlamaGen's numbering.
	for i := 0; i < n; i++ {
		out := s.Ch * s.Mult[n-1-i]
		for j := 0; j < s.NumRes+1; j++ {
			res(fmt.Sprintf("decoder.conv_blocks.%d.res.%d", i, j), in, out)
			in = out
			if i == 0 {
				attn(fmt.Sprintf("decoder.conv_blocks.%d.attn.%d", i, j), in)
			}
		}
		if i != n-1 {
			conv(fmt.Sprintf("decoder.conv_blocks.%d.upsample.conv", i), in, in, 3)
		}
	}
	norm("decoder.norm_out", in)
	conv("decoder.conv_out", 3, in, 3)
	conv("post_quant_conv", s.Z, s.Cvae, 1)
	return append(c.ts, Tensor{Name: "quantize.embedding.weight", Shape: []int{s.V, s.Cvae}, Std: 1},
		Tensor{Name: "quantize.codebook_used", Shape: []int{65536}})
}
