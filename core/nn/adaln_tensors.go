package nn

import (
	"fmt"

	"github.com/webvar/webvar/core/tensortable"
)

// AdaLNTensors is the checkpoint layout of a stack of AdaLN blocks and its head norm (models/basic_var.py
// AdaLNSelfAttn and AdaLNBeforeHead under blocks.N. and head_nm.), as LoadAdaLNStack reads it: the
// shared AdaLN linear first when c.SharedAdaLN, then each block, then the head norm's linear. The
// attention's zero_k_bias is a buffer of zeros, but the stack checks it and so lists it.
func AdaLNTensors(c AdaLNConfig) tensortable.Table {
	C, F := c.C, c.FFN
	linear := func(name string, out, in int, use tensortable.Use) tensortable.Spec {
		return tensortable.Spec{Name: name, Shape: []int{out, in}, Quantizable: true, Use: use}
	}
	vec := func(name string, shape ...int) tensortable.Spec { return tensortable.Spec{Name: name, Shape: shape} }
	var t tensortable.Table
	if c.SharedAdaLN {
		w := linear("shared_ada_lin.1.weight", 6*C, C, tensortable.PerClass)
		w.Calls = c.Depth // applied once per block, each with the block's ada_gss in its bias
		t = append(t, w, vec("shared_ada_lin.1.bias", 6*C))
	}
	for i := range c.Depth {
		p := fmt.Sprintf("blocks.%d.", i)
		if c.L2NormAttn {
			t = append(t, vec(p+"attn.scale_mul_1H11", 1, c.Heads, 1, 1))
		}
		t = append(t,
			vec(p+"attn.q_bias", C), vec(p+"attn.v_bias", C), vec(p+"attn.zero_k_bias", C),
			linear(p+"attn.mat_qkv.weight", 3*C, C, tensortable.PerToken),
			linear(p+"attn.proj.weight", C, C, tensortable.PerToken), vec(p+"attn.proj.bias", C),
			linear(p+"ffn.fc1.weight", F, C, tensortable.PerToken), vec(p+"ffn.fc1.bias", F),
			linear(p+"ffn.fc2.weight", C, F, tensortable.PerToken), vec(p+"ffn.fc2.bias", C),
		)
		if c.SharedAdaLN {
			t = append(t, vec(p+"ada_gss", 1, 1, 6, C))
		} else {
			t = append(t, linear(p+"ada_lin.1.weight", 6*C, C, tensortable.PerClass), vec(p+"ada_lin.1.bias", 6*C))
		}
	}
	return append(t, linear("head_nm.ada_lin.1.weight", 2*C, C, tensortable.PerClass), vec("head_nm.ada_lin.1.bias", 2*C))
}
