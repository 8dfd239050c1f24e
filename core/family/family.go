// Package family is the registry of the model families webvar runs: for each, how to recognise its
// checkpoints, its table of transformer tensors (the engine's Tensors: names, shapes from the inferred
// config, which are Linear weights that may be stored quantized), what its converted manifest records,
// and how to build a gen.Generator from its two weight sources (the transformer's and the image
// tokenizer's). Front ends and the converter go through it instead of switching on families.
package family

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/mar"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/core/tensortable"
	"github.com/webvar/webvar/core/varmodel"
)

// Options say what a checkpoint cannot: the step schedule (VAR: patch_nums when the checkpoint's L does
// not determine them; FlexVAR: the default schedule) and the head count of models without l2-norm
// attention.
type Options struct {
	PatchNums []int
	Heads     int     // MAR: the encoder's and, unless DecHeads, the decoder's; RQ: the body's and, unless DecHeads, the head's
	DecHeads  int     // MAR's decoder, RQ's head transformer, when it differs
	VAEScale  float64 // MAR: the latent scale of a VAE other than the released KL-16 (0: 0.2325)
}

// Family is one generator family.
type Family struct {
	Name  string // as recorded in a converted manifest: "var", "flexvar"
	Title string // for people: "VAR", "FlexVAR"
	// Detect reports whether a transformer checkpoint belongs to the family.
	Detect func(src core.WeightSource) bool
	// Tensors infers the architecture of a transformer checkpoint and returns the family's table of its
	// tensors for it (names, shapes, which Linear weights may be stored quantized, how generation uses
	// them); the checkpoint has been checked against it. Skipped buffers are not in it.
	Tensors func(src core.WeightSource, opt Options) (tensortable.Table, error)
	// Config infers the architecture and returns what a converted manifest records of it ("patch_nums"
	// is the schedule, "classes" the class count).
	Config func(src core.WeightSource, opt Options) (map[string]any, error)
	// Skipped are transformer and tokenizer tensors the converter leaves out: derivable buffers and
	// training statistics the loaders ignore.
	SkippedVAR, SkippedVAE []string
	// SkippedVAEPrefixes are tokenizer key prefixes left out the same way (training-only modules).
	SkippedVAEPrefixes []string
	// Load builds the models on b; defaults are the model's own settings (its manifest's), overriding
	// the family's official ones by setting name.
	Load func(varSrc, vaeSrc core.WeightSource, b core.Backend, opt Options, defaults gen.Settings) (gen.Generator, error)
}

// All lists the families, in the order Detect tries them. The table is built anew on each call: no
// package-level mutable state.
func All() []Family {
	return []Family{
		{
			Name: "var", Title: "VAR",
			Detect: func(src core.WeightSource) bool {
				_, lvl := src.Shape("lvl_embed.weight")
				ps, ok := src.Shape("pos_1LC")
				return lvl && ok && len(ps) == 3
			},
			Tensors: func(src core.WeightSource, opt Options) (tensortable.Table, error) {
				c, err := varmodel.InferConfig(src, varmodel.Options{PatchNums: opt.PatchNums, Heads: opt.Heads})
				if err != nil {
					return nil, err
				}
				return varmodel.Tensors(c), nil
			},
			Config: func(src core.WeightSource, opt Options) (map[string]any, error) {
				c, err := varmodel.InferConfig(src, varmodel.Options{PatchNums: opt.PatchNums, Heads: opt.Heads})
				if err != nil {
					return nil, err
				}
				return map[string]any{"patch_nums": c.PatchNums, "heads": c.Heads, "depth": c.Depth, "width": c.C,
					"classes": c.Classes, "vocab": c.V, "cvae": c.Cvae}, nil
			},
			SkippedVAR: []string{"lvl_1L", "attn_bias_for_masking"},
			SkippedVAE: []string{"quantize.ema_vocab_hit_SV"},
			Load: func(varSrc, vaeSrc core.WeightSource, b core.Backend, opt Options, d gen.Settings) (gen.Generator, error) {
				p, err := varmodel.LoadPipeline(varSrc, vaeSrc, b, varmodel.Options{PatchNums: opt.PatchNums, Heads: opt.Heads})
				if err != nil {
					return nil, err
				}
				s, err := VARSampling(d)
				if err != nil {
					return nil, err
				}
				return p.Generator(b, s), nil
			},
		},
		{
			Name: "flexvar", Title: "FlexVAR",
			Detect: flexvar.Detect,
			Tensors: func(src core.WeightSource, opt Options) (tensortable.Table, error) {
				c, err := flexvar.InferConfig(src, opt.Heads)
				if err != nil {
					return nil, err
				}
				return flexvar.Tensors(c), nil
			},
			Config: func(src core.WeightSource, opt Options) (map[string]any, error) {
				c, err := flexvar.InferConfig(src, opt.Heads)
				if err != nil {
					return nil, err
				}
				sched := opt.PatchNums
				if sched == nil {
					sched = flexvar.DefaultSchedule
				}
				if err := flexvar.CheckSchedule(flexvar.Square(sched)); err != nil {
					return nil, err
				}
				return map[string]any{"patch_nums": sched, "heads": c.Heads, "depth": c.Depth, "width": c.C,
					"classes": c.Classes, "vocab": c.V, "cvae": c.Cvae}, nil
			},
			SkippedVAR: []string{"attn_bias_for_masking"},
			SkippedVAE: []string{"quantize.codebook_used"},
			Load: func(varSrc, vaeSrc core.WeightSource, b core.Backend, opt Options, d gen.Settings) (gen.Generator, error) {
				p, err := flexvar.LoadPipeline(varSrc, vaeSrc, b, opt.Heads)
				if err != nil {
					return nil, err
				}
				def := flexvar.OfficialDefaults
				if opt.PatchNums != nil {
					def.Schedule = opt.PatchNums
				}
				if def, err = FlexVARDefaults(def, d); err != nil {
					return nil, err
				}
				return p.Generator(b, def), nil
			},
		},
		{
			Name: "mar", Title: "MAR",
			Detect: mar.Detect,
			Tensors: func(src core.WeightSource, opt Options) (tensortable.Table, error) {
				c, err := mar.InferConfig(src, marOptions(opt))
				if err != nil {
					return nil, err
				}
				return mar.Tensors(c), nil
			},
			Config: func(src core.WeightSource, opt Options) (map[string]any, error) {
				c, err := mar.InferConfig(src, marOptions(opt))
				if err != nil {
					return nil, err
				}
				scale := opt.VAEScale
				if scale == 0 {
					scale = mar.ScaleFactor
				}
				return map[string]any{"classes": c.Classes, "heads": c.Enc.Heads, "dec_heads": c.Dec.Heads, "vae_scale": scale,
					"depth": c.Enc.Depth, "dec_depth": c.Dec.Depth, "width": c.Enc.C, "dec_width": c.Dec.C,
					"seq_len": c.SeqLen, "buffer": c.Buffer, "token_dim": c.Ct, "diff_width": c.DiffW, "diff_depth": c.DiffDepth}, nil
			},
			// The KL VAE release keeps its training losses' modules (LPIPS, discriminator) under loss.*.
			SkippedVAEPrefixes: []string{"loss."},
			Load: func(varSrc, vaeSrc core.WeightSource, b core.Backend, opt Options, d gen.Settings) (gen.Generator, error) {
				p, err := mar.LoadPipeline(varSrc, vaeSrc, b, marOptions(opt))
				if err != nil {
					return nil, err
				}
				def := mar.OfficialSampling
				if def, err = MARDefaults(def, d); err != nil {
					return nil, err
				}
				return p.Generator(b, def), nil
			},
		},
		{
			Name: "rq", Title: "RQ-Transformer",
			Detect: rq.Detect,
			Tensors: func(src core.WeightSource, opt Options) (tensortable.Table, error) {
				c, err := rq.InferConfig(src, rqOptions(opt))
				if err != nil {
					return nil, err
				}
				return rq.Tensors(c), nil
			},
			Config: func(src core.WeightSource, opt Options) (map[string]any, error) {
				c, err := rq.InferConfig(src, rqOptions(opt))
				if err != nil {
					return nil, err
				}
				return map[string]any{"classes": c.Classes(), "heads": c.Body.Heads, "dec_heads": c.Head.Heads,
					"depth": c.Body.Layers, "dec_depth": c.Head.Layers, "width": c.C, "vocab": c.V,
					"code_shape": []int{c.H, c.W, c.D}}, nil
			},
			// The quantizer's EMA buffers are training state; the shared codebook's copies for depths 1.. are
			// identical to depth 0's (LoadVAE takes the depth from the transformer when they are absent).
			SkippedVAE: rqSkippedVAE(),
			Load: func(varSrc, vaeSrc core.WeightSource, b core.Backend, opt Options, d gen.Settings) (gen.Generator, error) {
				p, err := rq.LoadPipeline(varSrc, vaeSrc, b, rqOptions(opt))
				if err != nil {
					return nil, err
				}
				def, err := RQDefaults(rq.Defaults{}, d)
				if err != nil {
					return nil, err
				}
				return p.Generator(b, def), nil
			},
		},
	}
}

// Quantizer returns the family's test of whether a tensor of the transformer checkpoint src is a Linear
// weight that may be stored quantized: its Tensors table's, for the config inferred from src with opt.
func (f Family) Quantizer(src core.WeightSource, opt Options) (func(name string) bool, error) {
	t, err := f.Tensors(src, opt)
	if err != nil {
		return nil, err
	}
	return t.Quantizer(), nil
}

// rqOptions are RQ's head counts from the family options.
func rqOptions(opt Options) rq.Options {
	dec := opt.DecHeads
	if dec == 0 {
		dec = opt.Heads
	}
	return rq.Options{BodyHeads: opt.Heads, HeadHeads: dec}
}

// rqSkippedVAE lists the RQ-VAE tensors the converter leaves out: every codebook's EMA buffers and the
// copies of the shared codebook (depths 1..15).
func rqSkippedVAE() []string {
	var out []string
	for d := range 16 {
		p := fmt.Sprintf("quantizer.codebooks.%d.", d)
		out = append(out, p+"cluster_size_ema", p+"embed_ema")
		if d > 0 {
			out = append(out, p+"weight")
		}
	}
	return out
}

// RQDefaults is def overridden by the model's settings (temperature, top-k, top-p; cfg and the other
// families' settings do not apply and are ignored).
func RQDefaults(def rq.Defaults, d gen.Settings) (rq.Defaults, error) {
	o := overrides{d: d}
	set := o.set
	set("temperature", func(v string) (e error) { def.Temperature, e = strconv.ParseFloat(v, 64); return })
	set("top-k", func(v string) (e error) { def.TopK, e = strconv.Atoi(v); return })
	set("top-p", func(v string) (e error) { def.TopP, e = strconv.ParseFloat(v, 64); return })
	return def, o.err
}

// marOptions are MAR's head counts from the family options.
func marOptions(opt Options) mar.Options {
	dec := opt.DecHeads
	if dec == 0 {
		dec = opt.Heads
	}
	return mar.Options{EncHeads: opt.Heads, DecHeads: dec, VAEScale: opt.VAEScale}
}

// MARDefaults is def overridden by the model's settings (iters, diffusion-steps, temperature, cfg,
// cfg-schedule; the token families' top-k, top-p and more-smooth do not apply and are ignored).
func MARDefaults(def mar.Defaults, d gen.Settings) (mar.Defaults, error) {
	o := overrides{d: d}
	set := o.set
	set("iters", func(v string) (e error) { def.Iters, e = strconv.Atoi(v); return })
	set("diffusion-steps", func(v string) (e error) { def.DiffSteps, e = strconv.Atoi(v); return })
	set("temperature", func(v string) (e error) { def.Temperature, e = strconv.ParseFloat(v, 64); return })
	set("cfg", func(v string) (e error) { def.CFG, e = strconv.ParseFloat(v, 64); return })
	set("cfg-schedule", func(v string) (e error) { def.Schedule, e = mar.ParseCFGSchedule(v); return })
	return def, o.err
}

// Names lists the families' names.
func Names() []string {
	var out []string
	for _, f := range All() {
		out = append(out, f.Name)
	}
	return out
}

// Detect finds the family of a transformer checkpoint from its keys.
func Detect(src core.WeightSource) (Family, error) {
	for _, f := range All() {
		if f.Detect(src) {
			return f, nil
		}
	}
	return Family{}, fmt.Errorf("not a checkpoint of a known family (%s): no VAR position table (pos_1LC [1, L, C] with lvl_embed), "+
		"FlexVAR position grid (pos_1LC [1, C, H, W]) with transformer blocks, or MAR encoder (z_proj, encoder_pos_embed_learned) "+
		"with its diffusion head (diffloss.net), or RQ-Transformer (pos_emb_hw, pos_emb_d, body_transformer)", strings.Join(Names(), ", "))
}

// ByName returns the family recorded in a manifest.
func ByName(name string) (Family, error) {
	for _, f := range All() {
		if f.Name == name {
			return f, nil
		}
	}
	return Family{}, fmt.Errorf("model family %q: this build runs %s", name, strings.Join(Names(), ", "))
}

// VARSampling is VAR's official sampling overridden by the model's settings (cfg, top-k, top-p,
// more-smooth).
func VARSampling(d gen.Settings) (varmodel.Sampling, error) {
	s := varmodel.OfficialSampling
	o := overrides{d: d}
	set := o.set
	set("cfg", func(v string) (e error) { s.CFG, e = strconv.ParseFloat(v, 64); return })
	set("top-k", func(v string) (e error) { s.TopK, e = strconv.Atoi(v); return })
	set("top-p", func(v string) (e error) { s.TopP, e = strconv.ParseFloat(v, 64); return })
	set("more-smooth", func(v string) (e error) { s.MoreSmooth, e = strconv.ParseBool(v); return })
	return s, o.err
}

// FlexVARDefaults is def overridden by the model's settings (cfg, top-k, top-p, schedule, cfg-mode,
// max-pn; more-smooth, which FlexVAR does not take, is ignored).
func FlexVARDefaults(def flexvar.Defaults, d gen.Settings) (flexvar.Defaults, error) {
	o := overrides{d: d}
	set := o.set
	set("cfg", func(v string) (e error) { def.CFG, e = strconv.ParseFloat(v, 64); return })
	set("top-k", func(v string) (e error) { def.TopK, e = strconv.Atoi(v); return })
	set("top-p", func(v string) (e error) { def.TopP, e = strconv.ParseFloat(v, 64); return })
	set("schedule", func(v string) (e error) { def.Schedule, e = gen.ParseInts(v); return })
	set("cfg-mode", func(v string) (e error) { def.CFGMode, e = flexvar.ParseCFGMode(v); return })
	set("max-pn", func(v string) (e error) { def.MaxPN, e = strconv.Atoi(v); return })
	return def, o.err
}

// overrides applies a model's own settings d over a family's defaults, one named setting at a time; the
// first value that does not parse is the error.
type overrides struct {
	d   gen.Settings
	err error
}

// set parses the value of name, when d has one, with f.
func (o *overrides) set(name string, f func(string) error) {
	if v, ok := o.d[name]; ok && o.err == nil {
		if e := f(v); e != nil {
			o.err = fmt.Errorf("model default %s %q: %v", name, v, e)
		}
	}
}
