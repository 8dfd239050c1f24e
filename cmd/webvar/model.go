package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/family"
	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/mar"
	"github.com/webvar/webvar/core/nn"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/loader"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
	"github.com/webvar/webvar/weights/fashionvar"
)

// modelFlags say which model to open: a converted weights directory or URL (-weights), the two official
// checkpoints (-var, -vae), or, when none is given, the embedded default model (weights/fashionvar).
type modelFlags struct {
	varPath, vaePath, weightsDir string
	rqPath                       string // an RQ-Transformer release: stage1/ + stage2/ directory or .tar.gz
	ema                          bool   // RQ: the releases' EMA weights
	patchNums                    string
	heads, decHeads              int     // MAR: the encoder's and the decoder's (decHeads 0: the same)
	vaeScale                     float64 // MAR: the latent scale of a VAE other than the released KL-16
	demo                         string  // an embedded demo model by name
}

func (m *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.weightsDir, "weights", "", "a converted weights directory (webvar convert) or its http(s) URL (default: the embedded "+fashionvar.Name+" model)")
	fs.StringVar(&m.demo, "demo", "", "an embedded demo model by name instead of -weights: "+strings.Join(demoNames(), ", ")+" (default "+fashionvar.Name+")")
	fs.StringVar(&m.varPath, "var", "", "VAR transformer checkpoint (.pth or .safetensors), e.g. var_d16.pth, instead of -weights")
	fs.StringVar(&m.vaePath, "vae", "", "VQVAE checkpoint (.pth or .safetensors), e.g. vae_ch160v4096z32.pth, with -var")
	fs.StringVar(&m.patchNums, "patch-nums", "", "token map sides per scale, e.g. 1,2,3,4 (needed with -var unless the checkpoint's L is an official schedule or determines them)")
	fs.IntVar(&m.heads, "heads", 0, "attention heads, only for checkpoints without l2-norm attention (default width/64; MAR: the encoder's)")
	fs.IntVar(&m.decHeads, "dec-heads", 0, "MAR: the decoder's attention heads when they differ from -heads")
	fs.Float64Var(&m.vaeScale, "vae-scale", 0, "MAR: the latent scale of a VAE other than the released KL-16 (tokens = latents * scale; default 0.2325, or the one a converted model recorded)")
	fs.StringVar(&m.rqPath, "rq", "", "an RQ-Transformer release: a directory with stage1/ and stage2/ (config.yaml + model.pt each) or its .tar.gz, instead of -weights or -var/-vae")
	fs.BoolVar(&m.ema, "ema", false, "with -rq: the RQ-Transformer's EMA weights (stage2's state_dict_ema) instead of its state_dict, as the official --ema (the RQ-VAE is read from state_dict either way)")
}

// check validates the combination.
func (m *modelFlags) check() error {
	switch {
	case m.demo != "" && (m.weightsDir != "" || m.varPath != "" || m.vaePath != "" || m.rqPath != ""):
		return usageError{"give one of -demo, -weights, -rq and -var/-vae"}
	case m.rqPath != "" && (m.weightsDir != "" || m.varPath != "" || m.vaePath != ""):
		return usageError{"give one of -rq, -weights and -var/-vae"}
	case m.ema && m.rqPath == "":
		return usageError{"-ema goes with -rq"}
	case m.weightsDir != "" && (m.varPath != "" || m.vaePath != ""):
		return usageError{"give either -weights or -var and -vae, not both"}
	case m.weightsDir == "" && m.varPath == "" && m.vaePath != "":
		return usageError{"-var is required with -vae (a VAR checkpoint such as var_d16.pth)"}
	case m.weightsDir == "" && m.varPath != "" && m.vaePath == "":
		return usageError{"-vae is required with -var (a VQVAE checkpoint such as vae_ch160v4096z32.pth)"}
	}
	if m.demo != "" {
		if _, err := demoModel(m.demo); err != nil {
			return err
		}
	}
	if _, err := parseInts(m.patchNums); err != nil {
		return usageError{"-patch-nums: " + err.Error()}
	}
	return nil
}

// parseModelFlagSet parses args into fs, on which m, s and x have registered their flags, and checks
// them: the parsing that every command opening a model for generation (generate, edit, preview) shares.
// flag.ErrHelp comes back as it is (-h printed the usage); a bad flag or a stray argument is a
// usageError.
func parseModelFlagSet(fs *flag.FlagSet, args []string, m *modelFlags, s *samplingFlags, x *flexFlags) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	if err := m.check(); err != nil {
		return err
	}
	if err := s.parsed(fs); err != nil {
		return err
	}
	return x.parsed(fs)
}

// isDefault reports whether no model was named, so the embedded default model is used.
func (m *modelFlags) isDefault() bool {
	return m.weightsDir == "" && m.varPath == "" && m.vaePath == "" && m.rqPath == "" && m.demo == ""
}

// source returns the weights source and a name for messages (checkpoints have none).
func (m *modelFlags) source() (weights.Source, string) {
	switch {
	case m.isDefault():
		return fashionvar.Source(), "embedded model " + fashionvar.Name
	case m.demo != "":
		if d, err := demoModel(m.demo); err == nil {
			return weights.FSSource(d.FS), "embedded model " + d.Name
		}
	case strings.HasPrefix(m.weightsDir, "http://") || strings.HasPrefix(m.weightsDir, "https://"):
		return weights.HTTPSource(m.weightsDir, http.DefaultClient), m.weightsDir
	case m.weightsDir != "":
		return weights.DirSource(m.weightsDir), m.weightsDir
	}
	return nil, ""
}

// modelInfo is what a converted model's metadata says about it (empty for checkpoints).
type modelInfo struct {
	Name       string
	ClassNames []string
	Sampling   *convert.Sampling
}

func infoOf(name string, man *weights.Manifest) (modelInfo, error) {
	info := modelInfo{Name: name}
	var err error
	if info.ClassNames, err = convert.ClassNames(man); err != nil {
		return info, fmt.Errorf("%s: %w", name, err)
	}
	if info.Sampling, err = convert.SamplingOf(man); err != nil {
		return info, fmt.Errorf("%s: %w", name, err)
	}
	return info, nil
}

// peek reads only the model's metadata (the manifest of converted weights; nothing for checkpoints).
func (m *modelFlags) peek(ctx context.Context) (modelInfo, error) {
	src, name := m.source()
	if src == nil {
		return modelInfo{Name: m.varPath + " + " + m.vaePath}, nil
	}
	man, err := weights.LoadManifest(ctx, src)
	if err != nil {
		return modelInfo{}, fmt.Errorf("%s: %w", name, err)
	}
	return infoOf(name, man)
}

// open builds the pipeline on b. onProgress gets the download reports of converted weights; checkpoints
// are read without reports.
func (m *modelFlags) open(ctx context.Context, b core.Backend, onProgress func(weights.Progress)) (*varmodel.Pipeline, modelInfo, error) {
	pn, err := parseInts(m.patchNums)
	if err != nil {
		return nil, modelInfo{}, usageError{"-patch-nums: " + err.Error()}
	}
	opt := varmodel.Options{PatchNums: pn, Heads: m.heads}
	src, name := m.source()
	if src == nil {
		p, err := openPipeline(m.varPath, m.vaePath, b, opt)
		return p, modelInfo{Name: m.varPath + " + " + m.vaePath}, err
	}
	p, man, err := loadFrom(ctx, name, src, b, opt, onProgress)
	if err != nil {
		return nil, modelInfo{}, err
	}
	info, err := infoOf(name, man)
	return p, info, err
}

// openGenerator builds the model, of any family, on b as a gen.Generator with the model's own defaults.
// Checkpoints (-var, -vae) are recognised by their keys (core/family); -patch-nums is VAR's patch_nums
// or FlexVAR's default schedule.
func (m *modelFlags) openGenerator(ctx context.Context, b core.Backend, onProgress func(weights.Progress)) (gen.Generator, modelInfo, error) {
	pn, err := parseInts(m.patchNums)
	if err != nil {
		return nil, modelInfo{}, usageError{"-patch-nums: " + err.Error()}
	}
	opt := family.Options{PatchNums: pn, Heads: m.heads, DecHeads: m.decHeads, VAEScale: m.vaeScale}
	if m.rqPath != "" {
		p, err := rq.LoadRelease(m.rqPath, b, rq.ReleaseOptions{Open: openStateDict, EMA: m.ema})
		if err != nil {
			return nil, modelInfo{}, err
		}
		return p.Generator(b, rq.Defaults{}), modelInfo{Name: m.rqPath}, nil
	}
	src, name := m.source()
	if src == nil {
		g, err := openCheckpoints(m.varPath, m.vaePath, b, opt)
		return g, modelInfo{Name: m.varPath + " + " + m.vaePath}, err
	}
	wm, err := weights.Load(ctx, src, weights.LoadOptions{OnProgress: onProgress})
	if err != nil {
		return nil, modelInfo{}, fmt.Errorf("%s: %w", name, err)
	}
	g, err := convert.LoadGenerator(wm, b, opt)
	if err != nil {
		return nil, modelInfo{}, fmt.Errorf("%s: %w", name, err)
	}
	info, err := infoOf(name, wm.Manifest())
	return g, info, err
}

// openGeneratorPrinting is openGenerator with the download progress printed on one line of stderr.
func (m *modelFlags) openGeneratorPrinting(ctx context.Context, b core.Backend, stderr io.Writer) (gen.Generator, modelInfo, error) {
	last := -1
	g, info, err := m.openGenerator(ctx, b, progressPrinter(stderr, &last))
	if last >= 0 {
		fmt.Fprintln(stderr)
	}
	return g, info, err
}

// openCheckpoints opens a transformer and a tokenizer checkpoint, recognises their family from the
// transformer's keys and builds the models on b.
func openCheckpoints(varPath, vaePath string, b core.Backend, opt family.Options) (gen.Generator, error) {
	vc, err := loader.Open(varPath)
	if err != nil {
		return nil, err
	}
	defer vc.Close()
	ac, err := loader.Open(vaePath)
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	fam, err := family.Detect(vc.WeightSource())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", varPath, err)
	}
	g, err := fam.Load(vc.WeightSource(), ac.WeightSource(), b, opt, nil)
	if err != nil {
		return nil, fmt.Errorf("%s + %s: %w", varPath, vaePath, headsHint(err))
	}
	return g, nil
}

// openPrinting is open with the download progress printed on one line of stderr.
func (m *modelFlags) openPrinting(ctx context.Context, b core.Backend, stderr io.Writer) (*varmodel.Pipeline, modelInfo, error) {
	last := -1
	p, info, err := m.open(ctx, b, progressPrinter(stderr, &last))
	if last >= 0 {
		fmt.Fprintln(stderr)
	}
	return p, info, err
}

func progressPrinter(stderr io.Writer, last *int) func(weights.Progress) {
	return func(p weights.Progress) {
		if pct := int(100 * p.BytesDone / max(p.BytesTotal, 1)); pct/10 != *last/10 || p.BytesDone == p.BytesTotal {
			*last = pct
			fmt.Fprintf(stderr, "\rweights: %3d%% (%.1f / %.1f MB, chunk %d/%d)", pct, float64(p.BytesDone)/1e6,
				float64(p.BytesTotal)/1e6, p.ChunksDone, p.ChunksTotal)
		}
	}
}

// loadFrom streams converted weights from src and builds the models on b. Options.PatchNums defaults to
// the ones recorded at conversion.
func loadFrom(ctx context.Context, name string, src weights.Source, b core.Backend, opt varmodel.Options, onProgress func(weights.Progress)) (*varmodel.Pipeline, *weights.Manifest, error) {
	m, err := weights.Load(ctx, src, weights.LoadOptions{OnProgress: onProgress})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	p, err := convert.LoadPipeline(m, b, opt)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, m.Manifest(), nil
}

// samplingFlags are the sampling settings; values the user did not set come from the model's metadata
// when it has defaults, else from the flag defaults (the VAR paper's ImageNet settings).
type samplingFlags struct {
	cfg        float64
	topK       int
	topP       float64
	moreSmooth bool
	set        map[string]bool
}

func (s *samplingFlags) register(fs *flag.FlagSet) {
	d := varmodel.OfficialSampling
	fs.Float64Var(&s.cfg, "cfg", d.CFG, "classifier-free guidance strength (0: off; default: the model's own setting, else its family's official one; the value shown is VAR's)")
	fs.IntVar(&s.topK, "top-k", d.TopK, "keep the k most likely tokens (0: off, 1: greedy; default: the model's own setting, else its family's official one)")
	fs.Float64Var(&s.topP, "top-p", d.TopP, "nucleus sampling mass (0: off; default: the model's own setting, else its family's official one)")
	fs.BoolVar(&s.moreSmooth, "more-smooth", d.MoreSmooth, "VAR: Gumbel-softmax soft token embeddings (smoother, less detailed)")
}

// given returns the sampling flags the user set, by gen setting name.
func (s *samplingFlags) given() gen.Settings {
	g := gen.Settings{}
	if s.set["cfg"] {
		g["cfg"] = strconv.FormatFloat(s.cfg, 'g', -1, 64)
	}
	if s.set["top-k"] {
		g["top-k"] = strconv.Itoa(s.topK)
	}
	if s.set["top-p"] {
		g["top-p"] = strconv.FormatFloat(s.topP, 'g', -1, 64)
	}
	if s.set["more-smooth"] {
		g["more-smooth"] = strconv.FormatBool(s.moreSmooth)
	}
	return g
}

// flexFlags are the families' own settings: FlexVAR's (its schedule is -patch-nums), MAR's, and -set
// for any setting by name.
type flexFlags struct {
	cfgMode, aspect string
	maxPN           int
	// MAR
	iters, diffSteps int
	temperature      float64
	cfgSchedule      string
	extra            settingFlags
	set              map[string]bool
}

// settingFlags collects repeated -set name=value flags.
type settingFlags gen.Settings

func (s *settingFlags) String() string { return "" }

func (s *settingFlags) Set(v string) error {
	name, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q: want name=value", v)
	}
	if *s == nil {
		*s = settingFlags{}
	}
	(*s)[strings.TrimSpace(name)] = strings.TrimSpace(val)
	return nil
}

func (x *flexFlags) register(fs *flag.FlagSet) {
	d := flexvar.OfficialDefaults
	fs.StringVar(&x.cfgMode, "cfg-mode", d.CFGMode.String(), "FlexVAR: linear (guidance grows with the step, t = cfg*step/min(steps-1, 9)) or llamagen (constant: uncond + cfg*(cond-uncond))")
	fs.IntVar(&x.maxPN, "max-pn", d.MaxPN, "FlexVAR: steps with a larger grid side use full guidance and greedy tokens")
	fs.StringVar(&x.aspect, "aspect", "1:1", "FlexVAR: width:height of the image; each step's grid is resized to it (webvar's extension of the official square schedules)")
	m := mar.OfficialSampling
	fs.IntVar(&x.iters, "iters", m.Iters, "MAR: autoregressive iterations (at most the tokens per image; default: the model's own setting, else 64)")
	fs.IntVar(&x.diffSteps, "diffusion-steps", m.DiffSteps, "MAR: diffusion steps per token, 2 to 1000 (respaced from 1000)")
	fs.Float64Var(&x.temperature, "temperature", m.Temperature, "MAR: diffusion noise temperature")
	fs.StringVar(&x.cfgSchedule, "cfg-schedule", m.Schedule.String(), "MAR: linear (guidance grows as the image fills in) or constant")
	fs.Var(&x.extra, "set", "any setting of the model's family by name, name=value (repeatable; the page's URL parameters)")
}

// parsed records which flags were given and checks them; call after fs.Parse.
func (x *flexFlags) parsed(fs *flag.FlagSet) error {
	x.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { x.set[f.Name] = true })
	if _, err := flexvar.ParseCFGMode(x.cfgMode); err != nil {
		return usageError{"-cfg-mode: " + err.Error()}
	}
	if _, _, err := flexvar.ParseAspect(x.aspect); err != nil {
		return usageError{"-aspect: " + err.Error()}
	}
	if x.maxPN < 1 {
		return usageError{"-max-pn must be >= 1"}
	}
	if _, err := mar.ParseCFGSchedule(x.cfgSchedule); err != nil {
		return usageError{"-cfg-schedule: " + err.Error()}
	}
	return nil
}

// given returns the FlexVAR flags the user set, by gen setting name.
func (x *flexFlags) given() gen.Settings {
	g := gen.Settings{}
	if x.set == nil {
		return g
	}
	if x.set["cfg-mode"] {
		g["cfg-mode"] = x.cfgMode
	}
	if x.set["max-pn"] {
		g["max-pn"] = strconv.Itoa(x.maxPN)
	}
	if x.set["aspect"] {
		g["aspect"] = x.aspect
	}
	if x.set["iters"] {
		g["iters"] = strconv.Itoa(x.iters)
	}
	if x.set["diffusion-steps"] {
		g["diffusion-steps"] = strconv.Itoa(x.diffSteps)
	}
	if x.set["temperature"] {
		g["temperature"] = strconv.FormatFloat(x.temperature, 'g', -1, 64)
	}
	if x.set["cfg-schedule"] {
		g["cfg-schedule"] = x.cfgSchedule
	}
	for k, v := range x.extra {
		g[k] = v
	}
	return g
}

// parsed records which flags were given; call after fs.Parse.
func (s *samplingFlags) parsed(fs *flag.FlagSet) error {
	s.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { s.set[f.Name] = true })

	switch {
	case s.topK < 0:
		return usageError{"-top-k must be >= 0"}
	case s.topP < 0 || s.topP > 1:
		return usageError{"-top-p must be in [0, 1]"}
	case s.cfg < 0:
		return usageError{"-cfg must be >= 0"}
	}
	return nil
}

// apply fills the settings the user left unset from the model's defaults.
func (s *samplingFlags) apply(d *convert.Sampling) {
	if d == nil {
		return
	}
	if !s.set["cfg"] {
		s.cfg = d.CFG
	}
	if !s.set["top-k"] {
		s.topK = d.TopK
	}
	if !s.set["top-p"] {
		s.topP = d.TopP
	}
	if !s.set["more-smooth"] {
		s.moreSmooth = d.MoreSmooth
	}
}

// openStateDict opens a torch checkpoint's nested state dict key (rq.Opener).
func openStateDict(path, key string) (core.WeightSource, func() error, error) {
	c, err := loader.OpenStateDict(path, key)
	if err != nil {
		return nil, nil, err
	}
	return c.WeightSource(), c.Close, nil
}

// headsHint names the -heads flag in the error of a model whose head count no tensor says.
func headsHint(err error) error {
	var h *nn.HeadsUnknownError
	if errors.As(err, &h) {
		return fmt.Errorf("%w (use -heads N)", err)
	}
	return err
}
