package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/loader"
)

type generateFlags struct {
	varPath, vaePath string
	weightsDir       string
	patchNums        string
	heads            int
	class            int
	cfg              float64
	topK             int
	topP             float64
	seed             uint64
	moreSmooth       bool
	backend          string
	threads          int
	out              string
	tokens           string
	scales           string
}

func parseGenerate(args []string, stderr io.Writer) (*generateFlags, error) {
	f := &generateFlags{}
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.varPath, "var", "", "VAR transformer checkpoint (.pth or .safetensors), e.g. var_d16.pth")
	fs.StringVar(&f.vaePath, "vae", "", "VQVAE checkpoint (.pth or .safetensors), e.g. vae_ch160v4096z32.pth")
	fs.StringVar(&f.weightsDir, "weights", "", "a converted weights directory (webvar convert) or its http(s) URL, instead of -var and -vae")
	fs.StringVar(&f.patchNums, "patch-nums", "", "token map sides per scale, e.g. 1,2,3,4 (needed unless the checkpoint's L is an official schedule or determines them)")
	fs.IntVar(&f.heads, "heads", 0, "attention heads, only for checkpoints without l2-norm attention (default width/64)")
	fs.IntVar(&f.class, "class", 0, "class label (ImageNet index for official checkpoints)")
	fs.Float64Var(&f.cfg, "cfg", 4, "classifier-free guidance strength (0: off)")
	fs.IntVar(&f.topK, "top-k", 900, "keep the k most likely tokens (0: off, 1: greedy)")
	fs.Float64Var(&f.topP, "top-p", 0.95, "nucleus sampling mass (0: off)")
	fs.Uint64Var(&f.seed, "seed", 0, "random seed: the same seed gives the same image on the same backend")
	fs.BoolVar(&f.moreSmooth, "more-smooth", false, "Gumbel-softmax soft token embeddings (smoother, less detailed)")
	fs.StringVar(&f.backend, "backend", "cpu", "compute backend: cpu or webgpu")
	fs.IntVar(&f.threads, "threads", 0, "CPU backend threads (0: all cores)")
	fs.StringVar(&f.out, "out", "", "output PNG path")
	fs.StringVar(&f.tokens, "tokens", "", "also write the sampled tokens as JSON {\"tokens\": [[scale 0 ids], ...]}")
	fs.StringVar(&f.scales, "scales", "", "also write one preview PNG per scale into this directory")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	switch {
	case f.weightsDir != "" && (f.varPath != "" || f.vaePath != ""):
		return nil, usageError{"give either -weights or -var and -vae, not both"}
	case f.weightsDir == "" && f.varPath == "":
		return nil, usageError{"-var is required (a VAR checkpoint such as var_d16.pth), or -weights DIR"}
	case f.weightsDir == "" && f.vaePath == "":
		return nil, usageError{"-vae is required (a VQVAE checkpoint such as vae_ch160v4096z32.pth)"}
	case f.out == "":
		return nil, usageError{"-out is required (the PNG to write)"}
	case f.topK < 0:
		return nil, usageError{"-top-k must be >= 0"}
	case f.topP < 0 || f.topP > 1:
		return nil, usageError{"-top-p must be in [0, 1]"}
	case f.cfg < 0:
		return nil, usageError{"-cfg must be >= 0"}
	}
	return f, nil
}

// parseInts parses "1,2,3".
func parseInts(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%q is not a list of integers", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// newBackend opens a compute backend; the returned func releases it.
func newBackend(name string, threads int, stderr io.Writer) (core.Backend, func(), error) {
	switch name {
	case "cpu":
		return cpu.New(threads), func() {}, nil
	case "webgpu":
		b, err := webgpu.New()
		if err != nil {
			return nil, nil, fmt.Errorf("%w (use -backend cpu to run without a GPU)", err)
		}
		fmt.Fprintf(stderr, "GPU: %v\n", b.Adapter())
		return b, b.Close, nil
	}
	return nil, nil, usageError{fmt.Sprintf("-backend %q: want cpu or webgpu", name)}
}

// openPipeline opens both checkpoints and builds the models on b.
func openPipeline(varPath, vaePath string, b core.Backend, opt varmodel.Options) (*varmodel.Pipeline, error) {
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
	p, err := varmodel.LoadPipeline(vc.WeightSource(), ac.WeightSource(), b, opt)
	if err != nil {
		return nil, fmt.Errorf("%s + %s: %w", varPath, vaePath, err)
	}
	return p, nil
}

func writePNG(path string, x core.HostTensor, b int) error {
	img, err := core.ToImage(x, b)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	f, err := parseGenerate(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	pn, err := parseInts(f.patchNums)
	if err != nil {
		return usageError{"-patch-nums: " + err.Error()}
	}
	b, closeBackend, err := newBackend(f.backend, f.threads, stderr)
	if err != nil {
		return err
	}
	defer closeBackend()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var p *varmodel.Pipeline
	if f.weightsDir != "" {
		p, err = openWeights(ctx, f.weightsDir, b, varmodel.Options{PatchNums: pn, Heads: f.heads}, stderr)
	} else {
		p, err = openPipeline(f.varPath, f.vaePath, b, varmodel.Options{PatchNums: pn, Heads: f.heads})
	}
	if err != nil {
		return err
	}
	c := p.VAR.Config()
	if f.class < 0 || f.class >= c.Classes {
		return usageError{fmt.Sprintf("-class %d: this model has classes 0..%d", f.class, c.Classes-1)}
	}
	if f.scales != "" {
		if err := os.MkdirAll(f.scales, 0o755); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "VAR depth %d, width %d, %d heads, %d classes, patch_nums %v, VQVAE V=%d Cvae=%d, %dx%d images, backend %s\n",
		c.Depth, c.C, c.Heads, c.Classes, c.PatchNums, c.V, c.Cvae, p.VAE.ImageSize(), p.VAE.ImageSize(), b.Name())

	req := varmodel.Request{Labels: []int{f.class}, CFG: f.cfg, TopK: f.topK, TopP: f.topP,
		MoreSmooth: f.moreSmooth, Seed: f.seed, Previews: f.scales != ""}
	res, err := p.Generate(ctx, b, req, func(ev varmodel.ScaleEvent) error {
		fmt.Fprintf(stderr, "scale %d/%d (%dx%d) %.2fs\n", ev.Scale+1, ev.Scales, ev.PN, ev.PN, ev.Elapsed.Seconds())
		if ev.Preview != nil {
			name := filepath.Join(f.scales, fmt.Sprintf("scale_%02d_%dx%d.png", ev.Scale, ev.PN, ev.PN))
			return writePNG(name, *ev.Preview, 0)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := writePNG(f.out, res.Images, 0); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", f.out)
	if f.tokens != "" {
		data, err := json.Marshal(map[string][][]int{"tokens": res.TokensOf(0, c.PatchNums)})
		if err != nil {
			return err
		}
		if err := os.WriteFile(f.tokens, append(data, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", f.tokens)
	}
	return nil
}
