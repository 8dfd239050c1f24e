// Package mar runs MAR (Li et al., "Autoregressive Image Generation without Vector Quantization",
// LTH14/mar): continuous KL-16 latent tokens generated in a random order, several per iteration, by a
// bidirectional MAE-style encoder/decoder whose output conditions a small diffusion MLP (SimpleMLPAdaLN)
// that samples each token. The spec is ../shared/specs/mar.md; testdata/mar-tiny holds goldens from the
// official code.
package mar

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// Config is a MAR model's architecture, read from its checkpoint (InferConfig) except for the head
// counts, which no tensor says.
type Config struct {
	Enc, Dec  nn.PreNormConfig // encoder_blocks, decoder_blocks
	Ct        int              // token_embed_dim = vae_embed_dim * patch^2
	Classes   int              // class_emb rows; the unconditional row is fake_latent
	Buffer    int              // buffer_size: class-embedding slots before the tokens
	SeqLen    int              // tokens per image (seq_h^2)
	SeqH      int              // token grid side
	DiffW     int              // diffusion MLP width
	DiffDepth int              // its ResBlocks
	FreqSize  int              // timestep sinusoid size (256)
}

// Options are what a checkpoint cannot say: the encoder's and decoder's head counts (0: width/64, the
// head width of every official MAR).
type Options struct {
	EncHeads, DecHeads int
	// VAEScale is the latent scale (tokens = latents * VAEScale); 0: ScaleFactor, the released KL-16's.
	VAEScale float64
}

// Detect reports whether a checkpoint is a MAR transformer: its MAE encoder's z_proj and buffer
// positions and the diffusion head.
func Detect(src core.WeightSource) bool {
	_, z := src.Shape("z_proj.weight")
	_, p := src.Shape("encoder_pos_embed_learned")
	_, d := src.Shape("diffloss.net.input_proj.weight")
	return z && p && d
}

// InferConfig reads the architecture from the checkpoint's tensors.
func InferConfig(src core.WeightSource, opt Options) (Config, error) {
	var c Config
	var err error
	if c.Enc, err = nn.InferPreNorm(src, "encoder_blocks", nn.TimmKeys, opt.EncHeads); err != nil {
		return c, err
	}
	if c.Dec, err = nn.InferPreNorm(src, "decoder_blocks", nn.TimmKeys, opt.DecHeads); err != nil {
		return c, err
	}
	shape := func(name string, rank int) (core.Shape, error) {
		s, ok := src.Shape(name)
		if !ok {
			return nil, &core.WeightError{Tensor: name, Msg: "missing from checkpoint"}
		}
		if len(s) != rank {
			return nil, &core.WeightError{Tensor: name, Msg: fmt.Sprintf("shape %v, want rank %d", s, rank)}
		}
		return s, nil
	}
	zs, err := shape("z_proj.weight", 2)
	if err != nil {
		return c, err
	}
	if zs[0] != c.Enc.C {
		return c, &core.WeightError{Tensor: "z_proj.weight", Msg: fmt.Sprintf("shape %v, want [%d, token_embed_dim]", zs, c.Enc.C)}
	}
	c.Ct = zs[1]
	cs, err := shape("class_emb.weight", 2)
	if err != nil {
		return c, err
	}
	c.Classes = cs[0]
	ds, err := shape("diffusion_pos_embed_learned", 3)
	if err != nil {
		return c, err
	}
	c.SeqLen = ds[1]
	c.SeqH = int(math.Round(math.Sqrt(float64(c.SeqLen))))
	if c.SeqH*c.SeqH != c.SeqLen || ds[0] != 1 || ds[2] != c.Dec.C {
		return c, &core.WeightError{Tensor: "diffusion_pos_embed_learned", Msg: fmt.Sprintf("shape %v, want [1, h*h, %d]", ds, c.Dec.C)}
	}
	ps, err := shape("encoder_pos_embed_learned", 3)
	if err != nil {
		return c, err
	}
	c.Buffer = ps[1] - c.SeqLen
	if c.Buffer < 0 || ps[0] != 1 || ps[2] != c.Enc.C {
		return c, &core.WeightError{Tensor: "encoder_pos_embed_learned", Msg: fmt.Sprintf("shape %v, want [1, buffer + %d, %d]", ps, c.SeqLen, c.Enc.C)}
	}
	is, err := shape("diffloss.net.input_proj.weight", 2)
	if err != nil {
		return c, err
	}
	if is[1] != c.Ct {
		return c, &core.WeightError{Tensor: "diffloss.net.input_proj.weight", Msg: fmt.Sprintf("shape %v, want [width, %d]", is, c.Ct)}
	}
	c.DiffW = is[0]
	c.DiffDepth = nn.CountBlocks(src, "diffloss.net.res_blocks")
	ts, err := shape("diffloss.net.time_embed.mlp.0.weight", 2)
	if err != nil {
		return c, err
	}
	c.FreqSize = ts[1]
	if c.FreqSize%2 != 0 || c.FreqSize < 2 {
		return c, &core.WeightError{Tensor: "diffloss.net.time_embed.mlp.0.weight", Msg: fmt.Sprintf("shape %v: odd frequency size", ts)}
	}
	fs, err := shape("diffloss.net.final_layer.linear.weight", 2)
	if err != nil {
		return c, err
	}
	if fs[0] != 2*c.Ct {
		return c, &core.WeightError{Tensor: "diffloss.net.final_layer.linear.weight",
			Msg: fmt.Sprintf("shape %v: %d outputs, want 2 x %d (epsilon and the learned variance range)", fs, fs[0], c.Ct)}
	}
	// Every tensor the model reads, with the shape the inferred architecture gives it.
	return c, Tensors(c).Check(src)
}
