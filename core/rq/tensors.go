package rq

import (
	"fmt"

	"github.com/webvar/webvar/core/nn"
	"github.com/webvar/webvar/core/tensortable"
)

// Tensors is the RQ-Transformer's (stage 2) checkpoint layout for config c
// (rqvae/models/rqtransformer/transformers.py), as Load reads it. Its Use fields are unset:
// Pipeline.FLOPs counts RQ's arithmetic (the body per position, the head per depth).
func Tensors(c Config) tensortable.Table {
	C := c.C
	t := tensortable.Table{
		{Name: "pos_emb_cond", Shape: []int{1, 1, C}},
		{Name: "pos_emb_hw", Shape: []int{1, c.Positions(), C}},
		{Name: "pos_emb_d", Shape: []int{1, c.D, C}},
		{Name: "cond_emb.weight", Shape: []int{c.CondRows, C}},
	}
	t = append(t, nn.LinearTensors("input_mlp", C, c.InEmbed, true)...)
	t = append(t, nn.LinearTensors("head_mlp", C, c.InEmbed, true)...)
	t = append(t, stackTensors("body_transformer", C, c.Body)...)
	t = append(t, stackTensors("head_transformer", C, c.Head)...)
	t = append(t, nn.LayerNormTensors("classifier.layer_norm", C)...)
	return append(t, nn.LinearTensors("classifier.linear", c.V, C, true)...)
}

// stackTensors is one transformer's blocks under prefix.blocks.N., as loadStack reads them.
func stackTensors(prefix string, c int, s StackConfig) tensortable.Table {
	var t tensortable.Table
	for i := range s.Layers {
		p := fmt.Sprintf("%s.blocks.%d.", prefix, i)
		t = append(t, nn.LayerNormTensors(p+"ln1", c)...)
		t = append(t, nn.LayerNormTensors(p+"ln2", c)...)
		for _, n := range []string{"key", "query", "value", "proj"} {
			t = append(t, nn.LinearTensors(p+"attn."+n, c, c, s.AttnBias)...)
		}
		t = append(t, nn.LinearTensors(p+"mlp.0", s.FFN, c, s.MLPBias)...)
		t = append(t, nn.LinearTensors(p+"mlp.2", c, s.FFN, s.MLPBias)...)
	}
	return t
}
