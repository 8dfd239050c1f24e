// Package rq runs RQ-VAE + RQ-Transformer (Lee et al., "Autoregressive Image Generation using Residual
// Quantization", kakaobrain/rq-vae-transformer): an image is an H x W map of D stacked residual codes from
// one shared codebook (stage 1, the RQ-VAE), generated position by position in raster order by a body
// transformer over positions and a small head transformer over the D depths of each position (stage 2).
// The spec is ../shared/specs/rqvae.md; testdata/rq-tiny holds goldens from the official code.
//
// Conventions: images are NCHW in about [-1, 1] (the decoder's output is not clamped); latents and code
// maps are NHWC like the official encode(), so codes are laid out (b, h, w, d) row-major, the order
// RQTransformer.sample fills them in.
package rq

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// LayerNormEps is nn.LayerNorm's default eps, which every LayerNorm of the RQ-Transformer uses.
const LayerNormEps = 1e-5

// StackConfig is one of the two transformers (AttentionStack): GPT-2 style pre-LN blocks with separate
// query, key and value Linears, exact GELU and a causal mask.
type StackConfig struct {
	Layers   int  // n_layer
	Heads    int  // block.n_head: no tensor says it
	FFN      int  // the MLP's hidden width (4 * embed_dim in the official code)
	AttnBias bool // block.attn_bias
	MLPBias  bool // block.mlp_bias
}

// Config is the RQ-Transformer's architecture (stage 2). Only the configuration of every released model is
// implemented: shared_tok_emb, shared_cls_emb, input_emb_vqvae, head_emb_vqvae and cumsum_depth_ctx on,
// use_padding_emb and scaled_head_emb_vqvae off, a single condition token (block_size_cond 1) and gelu v1.
type Config struct {
	H, W, D  int // block_size: the code map and the codes per position
	C        int // embed_dim of both transformers
	V        int // vocab_size: codes per depth (the RQ-VAE's n_embed)
	CondRows int // cond_emb rows: vocab_size_cond classes, or 1 for an unconditional model (a start token)
	InEmbed  int // input_embed_dim: the RQ-VAE's code vector width
	Body     StackConfig
	Head     StackConfig
}

// Classes is the number of class labels the model takes: vocab_size_cond, or 1 (label 0, the start token)
// for an unconditional model.
func (c Config) Classes() int { return c.CondRows }

// Positions is H*W, the body's sequence length and the sampler's step count.
func (c Config) Positions() int { return c.H * c.W }

// Options say what the checkpoint tensors cannot: the head counts of the two transformers (0: width/64, the
// head width of every released model). LoadRelease takes them from config.yaml instead.
type Options struct {
	BodyHeads, HeadHeads int
	// H, W are the code map's sides (block_size[:2]); 0: a square map of pos_emb_hw's positions.
	H, W int
}

// Detect reports whether a checkpoint is an RQ-Transformer (stage 2): its three position tables and the
// body transformer's separate query Linear.
func Detect(src core.WeightSource) bool {
	_, hw := src.Shape("pos_emb_hw")
	_, d := src.Shape("pos_emb_d")
	_, q := src.Shape("body_transformer.blocks.0.attn.query.weight")
	_, c := src.Shape("classifier.linear.weight")
	return hw && d && q && c
}

// DetectVAE reports whether a checkpoint is an RQ-VAE (stage 1): a residual quantizer's codebooks beside
// the taming-layout coder.
func DetectVAE(src core.WeightSource) bool {
	_, cb := src.Shape("quantizer.codebooks.0.weight")
	_, pq := src.Shape("post_quant_conv.weight")
	return cb && pq
}

// shapeOf returns a tensor's shape, checking its rank.
func shapeOf(src core.WeightSource, name string, rank int) (core.Shape, error) {
	s, ok := src.Shape(name)
	if !ok {
		return nil, &core.WeightError{Tensor: name, Msg: "missing from checkpoint"}
	}
	if len(s) != rank {
		return nil, &core.WeightError{Tensor: name, Msg: fmt.Sprintf("shape %v, want rank %d", s, rank)}
	}
	for _, d := range s {
		if d < 1 {
			return nil, &core.WeightError{Tensor: name, Msg: fmt.Sprintf("shape %v has an empty dimension", s)}
		}
	}
	return s, nil
}

// inferStack reads a transformer's depth, MLP width and biases from prefix.blocks.N.*.
func inferStack(src core.WeightSource, prefix string, c, heads int) (StackConfig, error) {
	var s StackConfig
	s.Layers = nn.CountBlocks(src, prefix+".blocks")
	if s.Layers == 0 {
		return s, &core.WeightError{Tensor: prefix + ".blocks.0.attn.query.weight", Msg: "missing from checkpoint: no transformer blocks"}
	}
	name := prefix + ".blocks.0.mlp.0.weight"
	fs, err := shapeOf(src, name, 2)
	if err != nil {
		return s, err
	}
	if fs[1] != c {
		return s, &core.WeightError{Tensor: name, Msg: fmt.Sprintf("shape %v, want [hidden, %d]", fs, c)}
	}
	s.FFN = fs[0]
	// Any of the first block's biases says the stack has them, so that a checkpoint missing one is
	// reported by its name (tensortable.Table.Check) rather than read as a stack without biases.
	has := func(names ...string) bool {
		for _, n := range names {
			if _, ok := src.Shape(prefix + ".blocks.0." + n + ".bias"); ok {
				return true
			}
		}
		return false
	}
	s.AttnBias = has("attn.query", "attn.key", "attn.value", "attn.proj")
	s.MLPBias = has("mlp.0", "mlp.2")
	s.Heads = heads
	if s.Heads == 0 {
		s.Heads = max(1, c/64)
	}
	if s.Heads < 1 || c%s.Heads != 0 {
		return s, fmt.Errorf("%s: width %d is not divisible into %d heads", prefix, c, s.Heads)
	}
	return s, nil
}

// InferConfig reads the RQ-Transformer's architecture from its tensors. pos_emb_hw holds H*W rows: the map
// is square unless opt says its sides (config.yaml's block_size does, LoadRelease).
func InferConfig(src core.WeightSource, opt Options) (Config, error) {
	var c Config
	hw, err := shapeOf(src, "pos_emb_hw", 3)
	if err != nil {
		return c, err
	}
	if hw[0] != 1 {
		return c, &core.WeightError{Tensor: "pos_emb_hw", Msg: fmt.Sprintf("shape %v, want [1, H*W, C]", hw)}
	}
	c.C = hw[2]
	if opt.H > 0 || opt.W > 0 {
		if opt.H*opt.W != hw[1] {
			return c, &core.WeightError{Tensor: "pos_emb_hw", Msg: fmt.Sprintf("shape %v: %d positions, not a %dx%d map", hw, hw[1], opt.H, opt.W)}
		}
		c.H, c.W = opt.H, opt.W
	} else {
		side := int(math.Round(math.Sqrt(float64(hw[1]))))
		if side*side != hw[1] {
			return c, &core.WeightError{Tensor: "pos_emb_hw", Msg: fmt.Sprintf("shape %v: %d positions are not a square map (give H and W)", hw, hw[1])}
		}
		c.H, c.W = side, side
	}
	ds, err := shapeOf(src, "pos_emb_d", 3)
	if err != nil {
		return c, err
	}
	if ds[0] != 1 || ds[2] != c.C {
		return c, &core.WeightError{Tensor: "pos_emb_d", Msg: fmt.Sprintf("shape %v, want [1, D, %d]", ds, c.C)}
	}
	c.D = ds[1]
	ps, err := shapeOf(src, "pos_emb_cond", 3)
	if err != nil {
		return c, err
	}
	if ps[0] != 1 || ps[2] != c.C {
		return c, &core.WeightError{Tensor: "pos_emb_cond", Msg: fmt.Sprintf("shape %v, want [1, 1, %d]", ps, c.C)}
	}
	if ps[1] != 1 {
		return c, &core.WeightError{Tensor: "pos_emb_cond", Msg: fmt.Sprintf("shape %v: %d condition tokens (text conditioning, block_size_cond > 1) are not implemented", ps, ps[1])}
	}
	es, err := shapeOf(src, "cond_emb.weight", 2)
	if err != nil {
		return c, err
	}
	if es[1] != c.C {
		return c, &core.WeightError{Tensor: "cond_emb.weight", Msg: fmt.Sprintf("shape %v, want [classes, %d]", es, c.C)}
	}
	c.CondRows = es[0]
	is, err := shapeOf(src, "input_mlp.weight", 2)
	if err != nil {
		return c, err
	}
	if is[0] != c.C {
		return c, &core.WeightError{Tensor: "input_mlp.weight", Msg: fmt.Sprintf("shape %v, want [%d, input_embed_dim]", is, c.C)}
	}
	c.InEmbed = is[1]
	if _, ok := src.Shape("tok_emb.weight"); ok {
		return c, &core.WeightError{Tensor: "tok_emb.weight", Msg: "a learned token embedding (input_emb_vqvae or head_emb_vqvae off) is not implemented"}
	}
	if cs, ok := src.Shape("classifier.linear.weight"); ok && len(cs) == 3 {
		return c, &core.WeightError{Tensor: "classifier.linear.weight", Msg: fmt.Sprintf("shape %v: per-depth classifiers (shared_cls_emb off) are not implemented", cs)}
	}
	cs, err := shapeOf(src, "classifier.linear.weight", 2)
	if err != nil {
		return c, err
	}
	if cs[1] != c.C {
		return c, &core.WeightError{Tensor: "classifier.linear.weight", Msg: fmt.Sprintf("shape %v, want [vocab, %d]", cs, c.C)}
	}
	c.V = cs[0]
	if c.Body, err = inferStack(src, "body_transformer", c.C, opt.BodyHeads); err != nil {
		return c, err
	}
	if c.Head, err = inferStack(src, "head_transformer", c.C, opt.HeadHeads); err != nil {
		return c, err
	}
	// Every tensor the model reads, with the shape the inferred architecture gives it.
	return c, Tensors(c).Check(src)
}

// VAEConfig is the RQ-VAE's architecture (stage 1), read from its tensors.
type VAEConfig struct {
	Embed  int // embed_dim: latent channels, the code vector width
	NEmbed int // n_embed: codebook entries searched (the padding row n_embed excluded)
	Depth  int // codes per position (code_shape[2])
	Z      int // z_channels of the coder
	Levels int // coder resolutions: a code covers 2^(Levels-1) pixels on a side
	In     int // image channels the encoder takes (0: no encoder)
}

// Downsample is how many pixels one code position covers on a side.
func (c VAEConfig) Downsample() int { return 1 << (c.Levels - 1) }
