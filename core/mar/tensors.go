package mar

import (
	"fmt"

	"github.com/webvar/webvar/core/nn"
	"github.com/webvar/webvar/core/tensortable"
)

// Tensors is the model's checkpoint layout for config c (models/mar.py with diffloss.py's
// SimpleMLPAdaLN), as Load reads it. Its Use fields are unset: Pipeline.FLOPs counts MAR's arithmetic
// (encoder and decoder over different token sets, the diffusion MLP per sampling step).
func Tensors(c Config) tensortable.Table {
	E, D, P, W := c.Enc.C, c.Dec.C, c.Buffer+c.SeqLen, c.DiffW
	var t tensortable.Table
	add := func(ts ...tensortable.Spec) { t = append(t, ts...) }
	vec := func(name string, shape ...int) tensortable.Spec { return tensortable.Spec{Name: name, Shape: shape} }
	add(nn.LinearTensors("z_proj", E, c.Ct, true)...)
	add(nn.LayerNormTensors("z_proj_ln", E)...)
	add(vec("class_emb.weight", c.Classes, E), vec("fake_latent", 1, E), vec("encoder_pos_embed_learned", 1, P, E))
	add(nn.PreNormTensors("encoder_blocks", nn.TimmKeys, c.Enc)...)
	add(nn.LayerNormTensors("encoder_norm", E)...)
	add(nn.LinearTensors("decoder_embed", D, E, true)...)
	add(vec("mask_token", 1, 1, D), vec("decoder_pos_embed_learned", 1, P, D))
	add(nn.PreNormTensors("decoder_blocks", nn.TimmKeys, c.Dec)...)
	add(nn.LayerNormTensors("decoder_norm", D)...)
	add(vec("diffusion_pos_embed_learned", 1, c.SeqLen, D))
	const d = "diffloss.net."
	add(nn.LinearTensors(d+"time_embed.mlp.0", W, c.FreqSize, true)...)
	add(nn.LinearTensors(d+"time_embed.mlp.2", W, W, true)...)
	add(nn.LinearTensors(d+"cond_embed", W, D, true)...)
	add(nn.LinearTensors(d+"input_proj", W, c.Ct, true)...)
	for i := range c.DiffDepth {
		p := fmt.Sprintf("%sres_blocks.%d.", d, i)
		add(nn.LayerNormTensors(p+"in_ln", W)...)
		add(nn.LinearTensors(p+"mlp.0", W, W, true)...)
		add(nn.LinearTensors(p+"mlp.2", W, W, true)...)
		add(nn.LinearTensors(p+"adaLN_modulation.1", 3*W, W, true)...)
	}
	add(nn.LinearTensors(d+"final_layer.linear", 2*c.Ct, W, true)...)
	add(nn.LinearTensors(d+"final_layer.adaLN_modulation.1", 2*W, W, true)...)
	return t
}
