package varmodel

import (
	"regexp"
)

// quantizableRE matches the transformer weights that only Linear consumes, the ones that may be stored
// quantized (core.Weights.LinearWeight). Embeddings (class_emb, the VQVAE codebook), position tables,
// norms, biases and every convolution stay float.
var quantizableRE = regexp.MustCompile(`^(word_embed\.weight|shared_ada_lin\.1\.weight|head_nm\.ada_lin\.1\.weight|head\.weight|` +
	`blocks\.\d+\.(ada_lin\.1\.weight|attn\.mat_qkv\.weight|attn\.proj\.weight|ffn\.fc1\.weight|ffn\.fc2\.weight))$`)

// Quantizable reports whether the VAR checkpoint tensor name is a Linear weight that may be quantized.
func Quantizable(name string) bool { return quantizableRE.MatchString(name) }
