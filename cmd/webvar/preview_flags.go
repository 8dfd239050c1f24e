package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
)

// The preview's flags are parsed in every build (so `webvar preview -h` and flag errors work without the
// window), while the window itself is only linked with -tags preview: see preview.go.

// modelFlags say which model to open: a converted weights directory or URL (-weights) or the two official
// checkpoints (-var, -vae), as generate takes them.
type modelFlags struct {
	varPath, vaePath, weightsDir string
	patchNums                    string
	heads                        int
}

func (m *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.weightsDir, "weights", "", "a converted weights directory (webvar convert) or its http(s) URL")
	fs.StringVar(&m.varPath, "var", "", "VAR transformer checkpoint (.pth or .safetensors), instead of -weights")
	fs.StringVar(&m.vaePath, "vae", "", "VQVAE checkpoint (.pth or .safetensors), with -var")
	fs.StringVar(&m.patchNums, "patch-nums", "", "token map sides per scale, e.g. 1,2,3,4 (as for generate)")
	fs.IntVar(&m.heads, "heads", 0, "attention heads, only for checkpoints without l2-norm attention (as for generate)")
}

// check validates the combination. It is the one place that decides what "no model given" means: today a
// usage error; once a default model is built in, that case maps to it here.
func (m *modelFlags) check() error {
	switch {
	case m.weightsDir != "" && (m.varPath != "" || m.vaePath != ""):
		return usageError{"give either -weights or -var and -vae, not both"}
	case m.weightsDir == "" && m.varPath == "" && m.vaePath == "":
		return usageError{"no model: give -weights DIR (webvar convert) or -var and -vae checkpoints"}
	case m.weightsDir == "" && (m.varPath == "" || m.vaePath == ""):
		return usageError{"-var and -vae go together (the transformer and its VQVAE)"}
	}
	if _, err := parseInts(m.patchNums); err != nil {
		return usageError{"-patch-nums: " + err.Error()}
	}
	return nil
}

// open builds the pipeline on b with the code generate uses (openPipeline, loadWeights). onProgress gets
// the download reports of -weights; checkpoints are read without reports. It also returns the class names
// from the weights' metadata (nil when there are none).
func (m *modelFlags) open(ctx context.Context, b core.Backend, onProgress func(weights.Progress)) (*varmodel.Pipeline, []string, error) {
	pn, err := parseInts(m.patchNums)
	if err != nil {
		return nil, nil, usageError{"-patch-nums: " + err.Error()}
	}
	opt := varmodel.Options{PatchNums: pn, Heads: m.heads}
	if m.weightsDir == "" {
		p, err := openPipeline(m.varPath, m.vaePath, b, opt)
		return p, nil, err
	}
	p, man, err := loadWeights(ctx, m.weightsDir, b, opt, onProgress)
	if err != nil {
		return nil, nil, err
	}
	names, err := convert.ClassNames(man)
	if err != nil {
		return nil, nil, err
	}
	return p, names, nil
}

type previewFlags struct {
	model      modelFlags
	backend    string
	threads    int
	class      int
	seed       uint64
	cfg        float64
	topK       int
	topP       float64
	moreSmooth bool
	autostart  bool
	screenshot string
	saveDir    string
}

func parsePreview(args []string, stderr io.Writer) (*previewFlags, error) {
	f := &previewFlags{}
	fs := flag.NewFlagSet("preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.model.register(fs)
	// Not webgpu yet: after ebiten has opened its window, wgpu.CreateInstance (binding v0.23.0) aborts
	// with "Unknown gles3 minor version" (preview_test.go).
	fs.StringVar(&f.backend, "backend", "cpu", "compute backend: cpu or webgpu (webgpu aborts in wgpu-native once the window is open: a known binding bug)")
	fs.IntVar(&f.threads, "threads", 0, "CPU backend threads (0: all cores)")
	fs.IntVar(&f.class, "class", 0, "initial class label")
	fs.Uint64Var(&f.seed, "seed", 0, "initial random seed")
	fs.Float64Var(&f.cfg, "cfg", 4, "initial classifier-free guidance strength")
	fs.IntVar(&f.topK, "top-k", 900, "initial top-k (0: off, 1: greedy)")
	fs.Float64Var(&f.topP, "top-p", 0.95, "initial top-p (0: off)")
	fs.BoolVar(&f.moreSmooth, "more-smooth", false, "start with Gumbel-softmax soft token embeddings")
	fs.BoolVar(&f.autostart, "autostart", false, "generate once as soon as the model has loaded")
	fs.StringVar(&f.screenshot, "screenshot", "", "with -autostart: after the first image, save the window's canvas as this PNG and exit")
	fs.StringVar(&f.saveDir, "save-dir", ".", "directory that the Save PNG button writes to")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	if err := f.model.check(); err != nil {
		return nil, err
	}
	switch {
	case f.backend != "cpu" && f.backend != "webgpu":
		return nil, usageError{fmt.Sprintf("-backend %q: want webgpu or cpu", f.backend)}
	case f.screenshot != "" && !f.autostart:
		return nil, usageError{"-screenshot needs -autostart (it captures the first generated image)"}
	case f.class < 0:
		return nil, usageError{"-class must be >= 0"}
	case f.topK < 0:
		return nil, usageError{"-top-k must be >= 0"}
	case f.topP < 0 || f.topP > 1:
		return nil, usageError{"-top-p must be in [0, 1]"}
	case f.cfg < 0:
		return nil, usageError{"-cfg must be >= 0"}
	}
	return f, nil
}
