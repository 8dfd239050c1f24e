package main

import (
	"context"
	"fmt"
	"io"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/bench"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/core/webgpu"
)

// benchRQOn times RQ-Transformer generations (class 0, seed 0, the official sampling: temperature 1,
// top-k the whole vocabulary, top-p 0.92) on b: one warm-up, then reps timed runs; the transformer part
// is every position's body step, D head steps and sampling, the decode the RQ-VAE's.
func benchRQOn(ctx context.Context, b core.Backend, src *benchSource, varSrc core.WeightSource, f *benchFlags,
	reps int, log io.Writer) ([]bench.ModelReport, error) {
	if f.psnr > 0 {
		return nil, usageError{"-preview-psnr is for VAR models (linear preview maps)"}
	}
	p, err := rq.LoadPipeline(varSrc, src.vaeSrc, b, rq.Options{BodyHeads: src.opt.Heads, HeadHeads: src.opt.Heads})
	if err != nil {
		return nil, err
	}
	var loaded any
	if ms, ok := b.(memoryStatser); ok {
		loaded = ms.MemoryStats()
	}
	d := rq.OfficialDefaults
	g := p.Generator(b, d)
	opt := bench.GeneratorOptions{Request: gen.Request{Labels: []int{0}}, Reps: reps, Log: log}
	ht, _ := b.(hostTimer)
	var ht0 webgpu.HostTimes
	if ht != nil {
		opt.Timed = func() { ht0 = ht.HostTimes() }
	}
	runs, err := bench.RunGenerator(ctx, b.Name(), g, opt)
	if err != nil {
		return nil, err
	}
	c := p.M.Config()
	h, w := p.ImageSize()
	fl := bench.ModelFLOPs{Transformer: p.FLOPs(1), Decode: p.V.DecodeFLOPs(c.H, c.W)}
	rep, err := bench.NewModelReport(runs, fl)
	if err != nil {
		return nil, err
	}
	rep.Family = "rq"
	rep.PerScaleSeconds, rep.GFLOPPerScale = nil, nil // one step per position: the parts say enough
	rep.Sampling = fmt.Sprintf("temperature %g, top-k %d (the vocabulary), top-p %g; %dx%dx%d codes", d.Temperature, c.V, d.TopP, c.H, c.W, c.D)
	rep.Previews = "none"
	if ht != nil {
		hd := ht.HostTimes().Sub(ht0).Per(reps)
		rep.GPUHost = &hd
	}
	rep.GPUMemoryLoaded = loaded
	rep.Images, rep.Side = 1, max(h, w)
	return []bench.ModelReport{rep}, nil
}
