package varmodel

import (
	"github.com/webvar/webvar/core/nn"
	"github.com/webvar/webvar/core/tensortable"
)

// Tensors is the transformer's checkpoint layout for config c (models/var.py): what Load reads, with
// shapes. The derived buffers lvl_1L and attn_bias_for_masking are not in it (family "var" skips them).
func Tensors(c Config) tensortable.Table {
	C := c.C
	first := c.PatchNums[0] * c.PatchNums[0]
	t := tensortable.Table{
		{Name: "pos_start", Shape: []int{1, first, C}},
		{Name: "pos_1LC", Shape: []int{1, c.L, C}},
		{Name: "word_embed.weight", Shape: []int{C, c.Cvae}, Quantizable: true, Use: tensortable.PerInput},
		{Name: "word_embed.bias", Shape: []int{C}},
		{Name: "class_emb.weight", Shape: []int{c.Classes + 1, C}},
		{Name: "lvl_embed.weight", Shape: []int{len(c.PatchNums), C}},
	}
	t = append(t, nn.AdaLNTensors(c.AdaLN())...)
	return append(t,
		tensortable.Spec{Name: "head.weight", Shape: []int{c.V, C}, Quantizable: true, Use: tensortable.PerToken},
		tensortable.Spec{Name: "head.bias", Shape: []int{c.V}})
}
