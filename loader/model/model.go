// Package model is webvar for Go programs (a service, a game, a batch job): open a model of any family
// (VAR, FlexVAR) from a converted weights directory, its http(s) URL, an embedded copy, or the official
// checkpoints, and generate images with progress and cancellation through the family-neutral
// gen.Generator:
//
//	m, err := model.Open(ctx, "https://example.org/weights/fashionvar/", model.Options{})
//	if err != nil { ... }
//	res, err := m.Generate(ctx, gen.Request{Labels: []int{7}, Seed: 3}, func(s gen.Step) error {
//		log.Println(s.Label) // "scale 3/7 (3x3)"; return an error (or cancel ctx) to stop
//		return nil
//	})
//	img, err := core.ToImage(res.Images, 0) // an *image.NRGBA
//
// Settings (cfg, top-k, FlexVAR's schedule ...) go in gen.Request.Settings by name; m.Settings() lists
// them with the model's defaults.
package model

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/family"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/loader"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
)

// Options configure opening a model. The zero value runs on the CPU with every core.
type Options struct {
	// Backend runs the model: cpu.New(0) when nil; webgpu.New() for the GPU (the caller closes it).
	Backend core.Backend
	// PatchNums and Heads are what a checkpoint may not say (VAR: patch_nums of a non-official schedule;
	// FlexVAR: the default step schedule; models without l2-norm attention: the head count).
	PatchNums []int
	Heads     int
	// OnProgress receives download reports of converted weights.
	OnProgress func(weights.Progress)
	// Cache keeps verified chunks between runs (weights.Cache); nil: none.
	Cache weights.Cache
	// Client fetches http(s) locations; nil: http.DefaultClient.
	Client *http.Client
}

// Model is a loaded model: a gen.Generator plus what its metadata says.
type Model struct {
	gen.Generator
	// ClassNames has one name per class when the weights' metadata has them, else nil.
	ClassNames []string
}

// Open loads converted weights (webvar convert) from a directory path or an http(s) URL of one.
func Open(ctx context.Context, location string, opt Options) (*Model, error) {
	var src weights.Source
	if strings.HasPrefix(location, "http://") || strings.HasPrefix(location, "https://") {
		c := opt.Client
		if c == nil {
			c = http.DefaultClient
		}
		src = weights.HTTPSource(location, c)
	} else {
		src = weights.DirSource(location)
	}
	m, err := OpenSource(ctx, src, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", location, err)
	}
	return m, nil
}

// OpenFS loads converted weights from a file system (an embedded copy, such as
// weights/fashionvar.FS()).
func OpenFS(ctx context.Context, fsys fs.FS, opt Options) (*Model, error) {
	return OpenSource(ctx, weights.FSSource(fsys), opt)
}

// OpenSource loads converted weights from any weights.Source.
func OpenSource(ctx context.Context, src weights.Source, opt Options) (*Model, error) {
	wm, err := weights.Load(ctx, src, weights.LoadOptions{OnProgress: opt.OnProgress, Cache: opt.Cache})
	if err != nil {
		return nil, err
	}
	g, err := convert.LoadGenerator(wm, backend(opt), family.Options{PatchNums: opt.PatchNums, Heads: opt.Heads})
	if err != nil {
		return nil, err
	}
	names, err := convert.ClassNames(wm.Manifest())
	if err != nil {
		return nil, err
	}
	return &Model{Generator: g, ClassNames: names}, nil
}

// OpenCheckpoints loads the official checkpoints of any family: the transformer's (var_d16.pth,
// FlexVARd16-epo179.pth; .pth or .safetensors) and its image tokenizer's (vae_ch160v4096z32.pth,
// FlexVAE.pth). The family is recognised from the transformer's keys.
func OpenCheckpoints(transformer, tokenizer string, opt Options) (*Model, error) {
	vc, err := loader.Open(transformer)
	if err != nil {
		return nil, err
	}
	defer vc.Close()
	ac, err := loader.Open(tokenizer)
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	fam, err := family.Detect(vc.WeightSource())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", transformer, err)
	}
	g, err := fam.Load(vc.WeightSource(), ac.WeightSource(), backend(opt), family.Options{PatchNums: opt.PatchNums, Heads: opt.Heads}, nil)
	if err != nil {
		return nil, fmt.Errorf("%s + %s: %w", transformer, tokenizer, err)
	}
	return &Model{Generator: g}, nil
}

func backend(opt Options) core.Backend {
	if opt.Backend != nil {
		return opt.Backend
	}
	return cpu.New(0)
}
