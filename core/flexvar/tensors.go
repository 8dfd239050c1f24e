package flexvar

import (
	"github.com/webvar/webvar/core/nn"
	"github.com/webvar/webvar/core/tensortable"
)

// Tensors is the transformer's checkpoint layout for config c (models/flexvar.py): VAR's blocks, head and
// word_embed under the same names, a 2-D position grid instead of VAR's table and level embedding. The
// attn_bias_for_masking buffer of the training schedule is not in it (family "flexvar" skips it).
func Tensors(c Config) tensortable.Table {
	C := c.C
	t := tensortable.Table{
		{Name: "pos_start", Shape: []int{1, 1, C}},
		{Name: "pos_1LC", Shape: []int{1, C, c.PosH, c.PosW}},
		{Name: "word_embed.weight", Shape: []int{C, c.Cvae}, Quantizable: true, Use: tensortable.PerInput},
		{Name: "word_embed.bias", Shape: []int{C}},
		{Name: "class_emb.weight", Shape: []int{c.Classes + 1, C}},
	}
	t = append(t, nn.AdaLNTensors(c.AdaLNConfig)...)
	return append(t,
		tensortable.Spec{Name: "head.weight", Shape: []int{c.V, C}, Quantizable: true, Use: tensortable.PerToken},
		tensortable.Spec{Name: "head.bias", Shape: []int{c.V}})
}
