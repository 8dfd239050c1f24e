package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/bench"
	"github.com/webvar/webvar/core/mar"
	"github.com/webvar/webvar/core/webgpu"
)

// benchMAROn times MAR generations (class 0, seed 0, CFG at the official settings, -iters and
// -diffusion-steps) on b: one warm-up, then reps timed runs, each split into the MAE transformer, the
// diffusion head and the VAE decode.
func benchMAROn(ctx context.Context, b core.Backend, src *benchSource, varSrc core.WeightSource, f *benchFlags,
	reps int, log io.Writer) ([]bench.ModelReport, error) {
	if f.psnr > 0 {
		return nil, usageError{"-preview-psnr is for VAR models (linear preview maps)"}
	}
	heads := src.opt.Heads
	p, err := mar.LoadPipeline(varSrc, src.vaeSrc, b, mar.Options{EncHeads: heads, DecHeads: heads})
	if err != nil {
		return nil, err
	}
	var loaded any
	if ms, ok := b.(memoryStatser); ok {
		loaded = ms.MemoryStats()
	}
	c := p.M.Config()
	s := mar.OfficialSampling
	if f.iters > 0 {
		s.Iters = f.iters
	}
	if f.diffSteps > 0 {
		s.DiffSteps = f.diffSteps
	}
	s.Iters = min(s.Iters, c.SeqLen)
	ht, _ := b.(hostTimer)
	var ht0 webgpu.HostTimes
	type run struct{ total, transformer, diffusion, decode time.Duration }
	var runs []run
	var passes int
	for i := 0; i <= reps; i++ {
		what := "warm-up"
		if i > 0 {
			what = fmt.Sprintf("run %d/%d", i, reps)
		}
		fmt.Fprintf(log, "bench %s: %s\n", b.Name(), what)
		if i == 1 && ht != nil {
			ht0 = ht.HostTimes()
		}
		o := core.NewOps(b)
		times := &mar.Times{}
		start := time.Now()
		tokens, err := p.Run(ctx, o, mar.Request{Labels: []int{0}, Sampling: s, Rand: mar.NewRandom(0), Times: times})
		if err != nil {
			return nil, err
		}
		t1 := time.Now()
		img := o.Download(p.Decode(o, tokens, 1))
		if err := o.Err(); err != nil {
			return nil, err
		}
		o.ReleaseIdle()
		end := time.Now()
		for _, v := range img.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("bench: the image has non-finite values")
			}
		}
		if i > 0 {
			runs = append(runs, run{end.Sub(start), times.Transformer, times.Diffusion, end.Sub(t1)})
		}
		passes = times.NetPasses
	}
	med := func(pick func(run) time.Duration) (median, minimum float64) {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = pick(r).Seconds()
		}
		slices.Sort(v)
		m := v[len(v)/2]
		if len(v)%2 == 0 {
			m = (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		return m, v[0]
	}
	rep := bench.ModelReport{Family: "mar", Reps: len(runs), Previews: "none", Images: 1, Side: p.ImageSize(),
		Iters: s.Iters, DiffusionSteps: s.DiffSteps, DiffusionPasses: passes,
		Sampling: fmt.Sprintf("%d iterations x %d diffusion steps, cfg %g (%v), temperature %g", s.Iters, s.DiffSteps, s.CFG, s.Schedule, s.Temperature)}
	rep.TotalSeconds, rep.TotalSecondsMin = med(func(r run) time.Duration { return r.total })
	rep.TransformerSeconds, rep.TransformerMin = med(func(r run) time.Duration { return r.transformer })
	rep.DiffusionSeconds, rep.DiffusionMin = med(func(r run) time.Duration { return r.diffusion })
	rep.DecodeSeconds, rep.DecodeMin = med(func(r run) time.Duration { return r.decode })
	tf, df := p.FLOPs(s, 1)
	side := c.SeqH * p.Patch
	dec := p.V.DecodeFLOPs(side, side)
	rep.GFLOP = bench.PartGFLOP{Transformer: float64(tf) / 1e9, Diffusion: float64(df) / 1e9, Decode: float64(dec) / 1e9,
		Total: float64(tf+df+dec) / 1e9}
	rate := func(g, s float64) float64 {
		if s <= 0 {
			return 0
		}
		return g / s
	}
	rep.GFLOPS = bench.PartGFLOP{Transformer: rate(rep.GFLOP.Transformer, rep.TransformerSeconds),
		Diffusion: rate(rep.GFLOP.Diffusion, rep.DiffusionSeconds), Decode: rate(rep.GFLOP.Decode, rep.DecodeSeconds),
		Total: rate(rep.GFLOP.Total, rep.TotalSeconds)}
	if ht != nil {
		d := ht.HostTimes().Sub(ht0).Per(reps)
		rep.GPUHost = &d
	}
	rep.GPUMemoryLoaded = loaded
	return []bench.ModelReport{rep}, nil
}

// printMARReport is printModelReport's table for MAR: its parts are the MAE transformer, the diffusion
// head and the VAE decode.
func printMARReport(w io.Writer, r bench.ModelReport) {
	fmt.Fprintf(w, "diffusion network passes per image: %d (each over every token of its iteration, both CFG halves)\n", r.DiffusionPasses)
	fmt.Fprintf(w, "# GFLOP: matrix products (Linear, attention, convolutions), counted from the architecture\n")
	fmt.Fprintf(w, "%-22s %10s %10s %10s %10s\n", "part", "GFLOP", "median s", "min s", "GFLOP/s")
	row := func(name string, gflop, median, minimum float64) {
		rate := "-"
		if median > 0 && gflop > 0 {
			rate = fmt.Sprintf("%.2f", gflop/median)
		}
		fmt.Fprintf(w, "%-22s %10.4g %10.4f %10.4f %10s\n", name, gflop, median, minimum, rate)
	}
	row("transformer (MAE)", r.GFLOP.Transformer, r.TransformerSeconds, r.TransformerMin)
	row("diffusion head", r.GFLOP.Diffusion, r.DiffusionSeconds, r.DiffusionMin)
	row("VAE decode", r.GFLOP.Decode, r.DecodeSeconds, r.DecodeMin)
	row("total", r.GFLOP.Total, r.TotalSeconds, r.TotalSecondsMin)
}
