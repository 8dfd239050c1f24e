package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
	"github.com/webvar/webvar/weights/fashionvar"
)

// modelFlags say which model to open: a converted weights directory or URL (-weights), the two official
// checkpoints (-var, -vae), or, when none is given, the embedded default model (weights/fashionvar).
type modelFlags struct {
	varPath, vaePath, weightsDir string
	patchNums                    string
	heads                        int
}

func (m *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.weightsDir, "weights", "", "a converted weights directory (webvar convert) or its http(s) URL (default: the embedded "+fashionvar.Name+" model)")
	fs.StringVar(&m.varPath, "var", "", "VAR transformer checkpoint (.pth or .safetensors), e.g. var_d16.pth, instead of -weights")
	fs.StringVar(&m.vaePath, "vae", "", "VQVAE checkpoint (.pth or .safetensors), e.g. vae_ch160v4096z32.pth, with -var")
	fs.StringVar(&m.patchNums, "patch-nums", "", "token map sides per scale, e.g. 1,2,3,4 (needed with -var unless the checkpoint's L is an official schedule or determines them)")
	fs.IntVar(&m.heads, "heads", 0, "attention heads, only for checkpoints without l2-norm attention (default width/64)")
}

// check validates the combination.
func (m *modelFlags) check() error {
	switch {
	case m.weightsDir != "" && (m.varPath != "" || m.vaePath != ""):
		return usageError{"give either -weights or -var and -vae, not both"}
	case m.weightsDir == "" && m.varPath == "" && m.vaePath != "":
		return usageError{"-var is required with -vae (a VAR checkpoint such as var_d16.pth)"}
	case m.weightsDir == "" && m.varPath != "" && m.vaePath == "":
		return usageError{"-vae is required with -var (a VQVAE checkpoint such as vae_ch160v4096z32.pth)"}
	}
	if _, err := parseInts(m.patchNums); err != nil {
		return usageError{"-patch-nums: " + err.Error()}
	}
	return nil
}

// isDefault reports whether no model was named, so the embedded default model is used.
func (m *modelFlags) isDefault() bool {
	return m.weightsDir == "" && m.varPath == "" && m.vaePath == ""
}

// source returns the weights source and a name for messages (checkpoints have none).
func (m *modelFlags) source() (weights.Source, string) {
	switch {
	case m.isDefault():
		return fashionvar.Source(), "embedded model " + fashionvar.Name
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
	fs.Float64Var(&s.cfg, "cfg", 4, "classifier-free guidance strength (0: off; default: the model's own setting, else 4)")
	fs.IntVar(&s.topK, "top-k", 900, "keep the k most likely tokens (0: off, 1: greedy; default: the model's own setting, else 900)")
	fs.Float64Var(&s.topP, "top-p", 0.95, "nucleus sampling mass (0: off; default: the model's own setting, else 0.95)")
	fs.BoolVar(&s.moreSmooth, "more-smooth", false, "Gumbel-softmax soft token embeddings (smoother, less detailed)")
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
