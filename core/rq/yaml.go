package rq

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"go.yaml.in/yaml/v3"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/convnet"
)

// The release's config.yaml files are the official training configs (rqvae/utils/config.py): stage1's
// arch is RQVAE's hparams and ddconfig, stage2's arch is RQTransformerConfig, whose unset fields take the
// dataclass defaults (augment_arch_defaults). Only the fields the models need are read; the rest (dataset
// transforms, optimizer, loss, ...) is ignored.

// ints is a YAML value that is an int or a list of ints (vocab_size, top_k: per depth in the official
// code); null or absent is empty.
type ints []int

func (v *ints) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*v = nil
			return nil
		}
		var x int
		if err := n.Decode(&x); err != nil {
			return err
		}
		*v = ints{x}
		return nil
	case yaml.SequenceNode:
		var xs []int
		if err := n.Decode(&xs); err != nil {
			return err
		}
		*v = xs
		return nil
	}
	return fmt.Errorf("line %d: want an integer or a list of integers", n.Line)
}

// floats is ints for float values (top_p).
type floats []float64

func (v *floats) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*v = nil
			return nil
		}
		var x float64
		if err := n.Decode(&x); err != nil {
			return err
		}
		*v = floats{x}
		return nil
	case yaml.SequenceNode:
		var xs []float64
		if err := n.Decode(&xs); err != nil {
			return err
		}
		*v = xs
		return nil
	}
	return fmt.Errorf("line %d: want a number or a list of numbers", n.Line)
}

// one is the single value of a per-depth list whose entries agree (ok false when empty or they differ).
func one[T comparable](xs []T) (T, bool) {
	var zero T
	if len(xs) == 0 {
		return zero, false
	}
	for _, x := range xs[1:] {
		if x != xs[0] {
			return zero, false
		}
	}
	return xs[0], true
}

// ConfigError is a config.yaml that is malformed, asks for a variant this port does not implement, or
// disagrees with the checkpoint's tensors.
type ConfigError struct {
	File string // "stage2/config.yaml"
	Key  string // "arch.embed_dim" (empty: the whole file)
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + ": " + e.Key + ": " + e.Msg
}

// decodeYAML parses data into v; maxConfigBytes bounds it.
func decodeYAML(file string, data []byte, v any) error {
	if len(data) > maxConfigBytes {
		return &ConfigError{File: file, Msg: fmt.Sprintf("%d bytes is more than the %d a config.yaml may have", len(data), maxConfigBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return &ConfigError{File: file, Msg: "empty"}
		}
		return &ConfigError{File: file, Msg: "malformed YAML: " + err.Error()}
	}
	return nil
}

// maxConfigBytes bounds a config.yaml (the official ones are about 1 KB).
const maxConfigBytes = 1 << 20

type stage1YAML struct {
	Arch struct {
		Type    string `yaml:"type"`
		Hparams struct {
			BottleneckType *string `yaml:"bottleneck_type"`
			EmbedDim       *int    `yaml:"embed_dim"`
			NEmbed         ints    `yaml:"n_embed"`
			LatentShape    []int   `yaml:"latent_shape"`
			CodeShape      []int   `yaml:"code_shape"`
			SharedCodebook *bool   `yaml:"shared_codebook"`
		} `yaml:"hparams"`
		DD struct {
			DoubleZ         *bool `yaml:"double_z"`
			ZChannels       *int  `yaml:"z_channels"`
			Resolution      *int  `yaml:"resolution"`
			InChannels      *int  `yaml:"in_channels"`
			OutCh           *int  `yaml:"out_ch"`
			Ch              *int  `yaml:"ch"`
			ChMult          []int `yaml:"ch_mult"`
			NumResBlocks    *int  `yaml:"num_res_blocks"`
			AttnResolutions []int `yaml:"attn_resolutions"`
			ResampWithConv  *bool `yaml:"resamp_with_conv"`
		} `yaml:"ddconfig"`
	} `yaml:"arch"`
}

// VAESpec is what stage1/config.yaml says of the RQ-VAE.
type VAESpec struct {
	Embed, NEmbed   int
	H, W, D         int // code_shape
	Z, Resolution   int
	In, Out, Ch     int
	ChMult          []int
	NumResBlocks    int
	AttnResolutions []int
}

// ParseVAEConfig reads stage1/config.yaml (file names it in errors), rejecting what this port does not
// implement.
func ParseVAEConfig(file string, data []byte) (VAESpec, error) {
	var y stage1YAML
	var s VAESpec
	if err := decodeYAML(file, data, &y); err != nil {
		return s, err
	}
	bad := func(key, format string, a ...any) error {
		return &ConfigError{File: file, Key: key, Msg: fmt.Sprintf(format, a...)}
	}
	a, h, dd := &y.Arch, &y.Arch.Hparams, &y.Arch.DD
	if a.Type != "rq-vae" {
		return s, bad("arch.type", "%q, want rq-vae", a.Type)
	}
	if h.BottleneckType != nil && *h.BottleneckType != "rq" {
		return s, bad("arch.hparams.bottleneck_type", "%q, want rq", *h.BottleneckType)
	}
	s.Embed, s.NEmbed = 64, 512 // RQVAE's defaults
	if h.EmbedDim != nil {
		s.Embed = *h.EmbedDim
	}
	if len(h.NEmbed) > 0 {
		n, ok := one(h.NEmbed)
		if !ok {
			return s, bad("arch.hparams.n_embed", "%v: codebooks of different sizes are not implemented", []int(h.NEmbed))
		}
		s.NEmbed = n
	}
	if h.SharedCodebook == nil || !*h.SharedCodebook {
		return s, bad("arch.hparams.shared_codebook", "separate codebooks per depth are not implemented (want true)")
	}
	if len(h.CodeShape) != 3 {
		return s, bad("arch.hparams.code_shape", "%v, want [h, w, depth]", h.CodeShape)
	}
	s.H, s.W, s.D = h.CodeShape[0], h.CodeShape[1], h.CodeShape[2]
	if len(h.LatentShape) != 3 {
		return s, bad("arch.hparams.latent_shape", "%v, want [h, w, embed_dim]", h.LatentShape)
	}
	if h.LatentShape[0] != s.H || h.LatentShape[1] != s.W {
		return s, bad("arch.hparams.latent_shape", "%v with code_shape %v: grouping latent pixels into one code is not implemented", h.LatentShape, h.CodeShape)
	}
	if h.LatentShape[2] != s.Embed {
		return s, bad("arch.hparams.latent_shape", "%v, but embed_dim is %d", h.LatentShape, s.Embed)
	}
	if dd.DoubleZ == nil || *dd.DoubleZ {
		return s, bad("arch.ddconfig.double_z", "true (the default) gives the encoder 2*z_channels outputs, which quant_conv cannot take: want false")
	}
	if dd.ResampWithConv != nil && !*dd.ResampWithConv {
		return s, bad("arch.ddconfig.resamp_with_conv", "false (average-pool resampling) is not implemented")
	}
	for _, f := range []struct {
		key string
		v   *int
		dst *int
	}{{"z_channels", dd.ZChannels, &s.Z}, {"resolution", dd.Resolution, &s.Resolution}, {"in_channels", dd.InChannels, &s.In},
		{"out_ch", dd.OutCh, &s.Out}, {"ch", dd.Ch, &s.Ch}, {"num_res_blocks", dd.NumResBlocks, &s.NumResBlocks}} {
		if f.v == nil || *f.v < 1 {
			return s, bad("arch.ddconfig."+f.key, "missing or not positive")
		}
		*f.dst = *f.v
	}
	if len(dd.ChMult) == 0 {
		return s, bad("arch.ddconfig.ch_mult", "missing")
	}
	s.ChMult, s.AttnResolutions = dd.ChMult, dd.AttnResolutions
	for _, v := range []int{s.Embed, s.NEmbed, s.H, s.W, s.D} {
		if v < 1 {
			return s, bad("arch.hparams", "embed_dim %d, n_embed %d, code_shape %v: want positive sizes", s.Embed, s.NEmbed, h.CodeShape)
		}
	}
	if f := 1 << (len(s.ChMult) - 1); s.Resolution/f != s.H || s.Resolution/f != s.W || s.Resolution%f != 0 {
		return s, bad("arch.hparams.code_shape", "%v, but ddconfig.resolution %d over %d resolutions gives %dx%d latents", h.CodeShape, s.Resolution, len(s.ChMult), s.Resolution/f, s.Resolution/f)
	}
	return s, nil
}

// check compares the spec with the loaded VAE, naming the key and the tensor that disagree.
func (s VAESpec) check(file string, v *VAE) error {
	c := v.cfg
	mismatch := func(key string, want any, tensor string, got any) error {
		return &ConfigError{File: file, Key: key, Msg: fmt.Sprintf("%v, but the checkpoint's %s says %v", want, tensor, got)}
	}
	switch {
	case s.Embed != c.Embed:
		return mismatch("arch.hparams.embed_dim", s.Embed, "post_quant_conv.weight", c.Embed)
	case s.NEmbed != c.NEmbed:
		return mismatch("arch.hparams.n_embed", s.NEmbed, "quantizer.codebooks.0.weight (n_embed + 1 rows)", c.NEmbed)
	case s.D != c.Depth:
		return mismatch("arch.hparams.code_shape[2]", s.D, "quantizer.codebooks.N.weight count", c.Depth)
	case s.Z != c.Z:
		return mismatch("arch.ddconfig.z_channels", s.Z, "post_quant_conv.weight", c.Z)
	case v.enc == nil:
		return &ConfigError{File: file, Msg: "the checkpoint has no encoder (encoder.conv_in.weight)"}
	case s.In != c.In:
		return mismatch("arch.ddconfig.in_channels", s.In, "encoder.conv_in.weight", c.In)
	case s.Out != v.dec.ConvOut.Cout:
		return mismatch("arch.ddconfig.out_ch", s.Out, "decoder.conv_out.weight", v.dec.ConvOut.Cout)
	case s.Ch != v.enc.ConvIn.Cout:
		return mismatch("arch.ddconfig.ch", s.Ch, "encoder.conv_in.weight", v.enc.ConvIn.Cout)
	case len(s.ChMult) != c.Levels:
		return mismatch("arch.ddconfig.ch_mult", s.ChMult, "encoder.down.N / decoder.up.N count", c.Levels)
	}
	res := s.Resolution
	for i, m := range s.ChMult {
		attn := false
		for _, r := range s.AttnResolutions {
			attn = attn || r == res
		}
		for _, side := range []struct {
			name   string
			lv     convnet.Level
			blocks int
		}{{"encoder.down", v.enc.Levels[i], s.NumResBlocks}, {"decoder.up", v.dec.Levels[i], s.NumResBlocks + 1}} {
			p := fmt.Sprintf("%s.%d", side.name, i)
			if len(side.lv.Blocks) != side.blocks {
				return mismatch("arch.ddconfig.num_res_blocks", s.NumResBlocks, p+".block.N count", len(side.lv.Blocks))
			}
			if got := side.lv.Blocks[0].Conv1.Cout; got != s.Ch*m {
				return mismatch(fmt.Sprintf("arch.ddconfig.ch_mult[%d]", i), m, p+".block.0.conv1.weight", fmt.Sprintf("%d channels = ch x %v", got, float64(got)/float64(s.Ch)))
			}
			if has := side.lv.Attns[0] != nil; has != attn {
				return mismatch("arch.ddconfig.attn_resolutions", s.AttnResolutions, p+".attn.0", fmt.Sprintf("attention present %v at resolution %d", has, res))
			}
		}
		res /= 2
	}
	return nil
}

type stackYAML struct {
	NLayer *int `yaml:"n_layer"`
	Block  struct {
		EmbedDim *int    `yaml:"embed_dim"`
		NHead    *int    `yaml:"n_head"`
		MLPBias  *bool   `yaml:"mlp_bias"`
		AttnBias *bool   `yaml:"attn_bias"`
		GELU     *string `yaml:"gelu"`
	} `yaml:"block"`
}

type samplingYAML struct {
	Temp *float64 `yaml:"temp"`
	TopK ints     `yaml:"top_k"`
	TopP floats   `yaml:"top_p"`
}

type stage2YAML struct {
	Dataset struct {
		VocabSize ints `yaml:"vocab_size"`
	} `yaml:"dataset"`
	Arch struct {
		Type               string    `yaml:"type"`
		VocabSize          ints      `yaml:"vocab_size"`
		BlockSize          []int     `yaml:"block_size"`
		EmbedDim           *int      `yaml:"embed_dim"`
		InputEmbedDim      *int      `yaml:"input_embed_dim"`
		UsePaddingEmb      *bool     `yaml:"use_padding_emb"`
		InputEmbVQVAE      *bool     `yaml:"input_emb_vqvae"`
		HeadEmbVQVAE       *bool     `yaml:"head_emb_vqvae"`
		ScaledHeadEmbVQVAE *bool     `yaml:"scaled_head_emb_vqvae"`
		CumsumDepthCtx     *bool     `yaml:"cumsum_depth_ctx"`
		SharedTokEmb       *bool     `yaml:"shared_tok_emb"`
		SharedClsEmb       *bool     `yaml:"shared_cls_emb"`
		VocabSizeCond      *int      `yaml:"vocab_size_cond"`
		BlockSizeCond      *int      `yaml:"block_size_cond"`
		Body               stackYAML `yaml:"body"`
		Head               stackYAML `yaml:"head"`
	} `yaml:"arch"`
	Sampling   samplingYAML `yaml:"sampling"`
	Experiment struct {
		Sample samplingYAML `yaml:"sample"`
	} `yaml:"experiment"`
}

// ParseConfig reads stage2/config.yaml (file names it in errors): the RQ-Transformer's architecture and
// the release's sampling defaults (sampling.temp/top_k/top_p, which main_sampling_fid uses, else
// experiment.sample). FFN is left 0 (no key says it; the tensors do).
func ParseConfig(file string, data []byte) (Config, Defaults, error) {
	var y stage2YAML
	var c Config
	var d Defaults
	if err := decodeYAML(file, data, &y); err != nil {
		return c, d, err
	}
	bad := func(key, format string, a ...any) error {
		return &ConfigError{File: file, Key: key, Msg: fmt.Sprintf(format, a...)}
	}
	a := &y.Arch
	if a.Type != "rq-transformer" {
		return c, d, bad("arch.type", "%q, want rq-transformer", a.Type)
	}
	// The flags of every released model; the dataclass default of each is false.
	for _, f := range []struct {
		key  string
		v    *bool
		want bool
	}{{"shared_tok_emb", a.SharedTokEmb, true}, {"shared_cls_emb", a.SharedClsEmb, true}, {"input_emb_vqvae", a.InputEmbVQVAE, true},
		{"head_emb_vqvae", a.HeadEmbVQVAE, true}, {"cumsum_depth_ctx", a.CumsumDepthCtx, true},
		{"use_padding_emb", a.UsePaddingEmb, false}, {"scaled_head_emb_vqvae", a.ScaledHeadEmbVQVAE, false}} {
		got := f.v != nil && *f.v
		if got != f.want {
			return c, d, bad("arch."+f.key, "%v is not implemented (every released model has %v)", got, f.want)
		}
	}
	vs := a.VocabSize
	key := "arch.vocab_size"
	if len(vs) == 0 { // augment_defaults takes it from the dataset
		vs, key = y.Dataset.VocabSize, "dataset.vocab_size"
	}
	v, ok := one(vs)
	if !ok {
		if len(vs) == 0 {
			return c, d, bad("arch.vocab_size", "missing (and no dataset.vocab_size)")
		}
		return c, d, bad(key, "%v: vocabularies of different sizes per depth are not implemented", []int(vs))
	}
	c.V = v
	if len(a.BlockSize) != 3 {
		return c, d, bad("arch.block_size", "%v, want [H, W, D]", a.BlockSize)
	}
	c.H, c.W, c.D = a.BlockSize[0], a.BlockSize[1], a.BlockSize[2]
	if a.EmbedDim == nil {
		return c, d, bad("arch.embed_dim", "missing")
	}
	c.C = *a.EmbedDim
	if a.InputEmbedDim == nil {
		return c, d, bad("arch.input_embed_dim", "missing (input_emb_vqvae needs it)")
	}
	c.InEmbed = *a.InputEmbedDim
	c.CondRows = 1 // vocab_size_cond 0 or 1: unconditional, cond_emb is a start token
	if a.VocabSizeCond != nil && *a.VocabSizeCond > 1 {
		c.CondRows = *a.VocabSizeCond
	}
	if a.BlockSizeCond != nil && *a.BlockSizeCond > 1 {
		return c, d, bad("arch.block_size_cond", "%d condition tokens (text conditioning) are not implemented", *a.BlockSizeCond)
	}
	for _, v := range []int{c.V, c.H, c.W, c.D, c.C, c.InEmbed} {
		if v < 1 {
			return c, d, bad("arch", "vocab_size %d, block_size %v, embed_dim %d, input_embed_dim %d: want positive sizes", c.V, a.BlockSize, c.C, c.InEmbed)
		}
	}
	var err error
	if c.Body, err = parseStack(file, "arch.body", a.Body, c.C); err != nil {
		return c, d, err
	}
	if c.Head, err = parseStack(file, "arch.head", a.Head, c.C); err != nil {
		return c, d, err
	}
	// Sampling defaults.
	for _, s := range []samplingYAML{y.Sampling, y.Experiment.Sample} {
		if d.Temperature == 0 && s.Temp != nil && *s.Temp > 0 {
			d.Temperature = *s.Temp
		}
		if k, ok := one(s.TopK); ok && d.TopK == 0 && k > 0 {
			d.TopK = k
		}
		if p, ok := one(s.TopP); ok && d.TopP == 0 && p > 0 && !math.IsNaN(p) {
			d.TopP = min(p, 1)
		}
	}
	return c, d, nil
}

func parseStack(file, key string, y stackYAML, c int) (StackConfig, error) {
	bad := func(k, format string, a ...any) error {
		return &ConfigError{File: file, Key: key + k, Msg: fmt.Sprintf(format, a...)}
	}
	var s StackConfig
	if y.NLayer == nil || *y.NLayer < 1 {
		return s, bad(".n_layer", "missing or not positive")
	}
	s.Layers = *y.NLayer
	if y.Block.NHead == nil || *y.Block.NHead < 1 {
		return s, bad(".block.n_head", "missing or not positive")
	}
	s.Heads = *y.Block.NHead
	if c%s.Heads != 0 {
		return s, bad(".block.n_head", "embed_dim %d is not divisible into %d heads", c, s.Heads)
	}
	if y.Block.EmbedDim != nil && *y.Block.EmbedDim != c {
		return s, bad(".block.embed_dim", "%d differs from arch.embed_dim %d (not implemented)", *y.Block.EmbedDim, c)
	}
	if y.Block.GELU != nil && *y.Block.GELU != "v1" {
		return s, bad(".block.gelu", "%q: only v1 (exact GELU) is implemented", *y.Block.GELU)
	}
	s.AttnBias = y.Block.AttnBias == nil || *y.Block.AttnBias
	s.MLPBias = y.Block.MLPBias == nil || *y.Block.MLPBias
	return s, nil
}

// CheckConfig compares config.yaml's architecture (ParseConfig) with the one the tensors say (InferConfig
// with the YAML's heads), naming the key and the tensor that disagree. It returns the configuration to
// build: the YAML's, with the MLP width from the tensors.
func CheckConfig(file string, y Config, src core.WeightSource) (Config, error) {
	if hw, ok := src.Shape("pos_emb_hw"); ok && (len(hw) != 3 || hw[1] != y.H*y.W) {
		return y, &ConfigError{File: file, Key: "arch.block_size", Msg: fmt.Sprintf("%v (%d positions), but the checkpoint's pos_emb_hw is %v", []int{y.H, y.W, y.D}, y.H*y.W, hw)}
	}
	t, err := InferConfig(src, Options{BodyHeads: y.Body.Heads, HeadHeads: y.Head.Heads, H: y.H, W: y.W})
	if err != nil {
		return y, err
	}
	type row struct {
		key     string
		want    int
		tensor  string
		got     int
		flagged bool
	}
	rows := []row{
		{key: "arch.embed_dim", want: y.C, tensor: "pos_emb_hw", got: t.C},
		{key: "arch.block_size[0]*[1]", want: y.H * y.W, tensor: "pos_emb_hw", got: t.H * t.W},
		{key: "arch.block_size[2]", want: y.D, tensor: "pos_emb_d", got: t.D},
		{key: "arch.vocab_size", want: y.V, tensor: "classifier.linear.weight", got: t.V},
		{key: "arch.vocab_size_cond", want: y.CondRows, tensor: "cond_emb.weight", got: t.CondRows},
		{key: "arch.input_embed_dim", want: y.InEmbed, tensor: "input_mlp.weight", got: t.InEmbed},
		{key: "arch.body.n_layer", want: y.Body.Layers, tensor: "body_transformer.blocks.N", got: t.Body.Layers},
		{key: "arch.head.n_layer", want: y.Head.Layers, tensor: "head_transformer.blocks.N", got: t.Head.Layers},
		{key: "arch.body.block.attn_bias", want: b2i(y.Body.AttnBias), tensor: "body_transformer.blocks.0.attn.query.bias (present)", got: b2i(t.Body.AttnBias)},
		{key: "arch.body.block.mlp_bias", want: b2i(y.Body.MLPBias), tensor: "body_transformer.blocks.0.mlp.0.bias (present)", got: b2i(t.Body.MLPBias)},
		{key: "arch.head.block.attn_bias", want: b2i(y.Head.AttnBias), tensor: "head_transformer.blocks.0.attn.query.bias (present)", got: b2i(t.Head.AttnBias)},
		{key: "arch.head.block.mlp_bias", want: b2i(y.Head.MLPBias), tensor: "head_transformer.blocks.0.mlp.0.bias (present)", got: b2i(t.Head.MLPBias)},
		{key: "MLP width (4 x arch.embed_dim)", want: 4 * y.C, tensor: "body_transformer.blocks.0.mlp.0.weight", got: t.Body.FFN},
		{key: "MLP width (4 x arch.embed_dim)", want: 4 * y.C, tensor: "head_transformer.blocks.0.mlp.0.weight", got: t.Head.FFN},
	}
	for _, r := range rows {
		if r.want != r.got {
			return y, &ConfigError{File: file, Key: r.key, Msg: fmt.Sprintf("%d, but the checkpoint's %s says %d", r.want, r.tensor, r.got)}
		}
	}
	y.Body.FFN, y.Head.FFN = t.Body.FFN, t.Head.FFN
	return y, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
