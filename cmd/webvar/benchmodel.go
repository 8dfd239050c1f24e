package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/bench"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/internal/randmodel"
	"github.com/webvar/webvar/loader"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
)

// benchSource is a model for `webvar bench -model`/`-weights`: its two weight sources and what they are.
type benchSource struct {
	desc           string            // one line for the table's header
	varSrc, vaeSrc core.WeightSource // the transformer's and the VQVAE's tensors
	opt            varmodel.Options
	// converted is set for a weights directory: its quantization is fixed, its download is its chunks.
	converted *weights.Manifest
	close     func()
}

// benchModelNames are the names -model accepts.
func benchModelNames() []string { return []string{"tiny", "d16", "d20"} }

// openBenchModel maps a model name to its weights. This is the one place a new name is wired in (the
// default model, once it is embedded, becomes a case returning its converted sources).
func openBenchModel(name string) (*benchSource, error) {
	switch name {
	case "tiny":
		dir, err := findUp(filepath.Join("testdata", "var-tiny"))
		if err != nil {
			return nil, fmt.Errorf("-model tiny needs the test fixture: %w (run from the webvar repository)", err)
		}
		vc, err := loader.Open(filepath.Join(dir, "var.pth"))
		if err != nil {
			return nil, err
		}
		ac, err := loader.Open(filepath.Join(dir, "vae.pth"))
		if err != nil {
			vc.Close()
			return nil, err
		}
		return &benchSource{
			desc:   "var-tiny test fixture (" + dir + ")",
			varSrc: vc.WeightSource(), vaeSrc: ac.WeightSource(),
			opt:   varmodel.Options{PatchNums: []int{1, 2, 3, 4}},
			close: func() { vc.Close(); ac.Close() },
		}, nil
	case "d16", "d20":
		depth := 16
		if name == "d20" {
			depth = 20
		}
		vs, as := randmodel.Official(depth)
		// Generation never runs the encoder: leave it out, as `webvar convert -no-encoder` does, so that
		// memory and download describe what generating needs.
		as.Encoder = false
		varSrc, err := randmodel.NewSource(randmodel.VARTensors(vs), randmodel.SeedVAR)
		if err != nil {
			return nil, err
		}
		vaeSrc, err := randmodel.NewSource(randmodel.VAETensors(as), randmodel.SeedVAE)
		if err != nil {
			return nil, err
		}
		return &benchSource{
			desc: fmt.Sprintf("random weights in VAR-d%d's shapes (width %d, %d heads, %d scales, VQVAE ch %d; drawn in memory)",
				depth, vs.C, vs.Heads, len(vs.PatchNums), as.Ch),
			varSrc: varSrc, vaeSrc: vaeSrc, close: func() {},
		}, nil
	}
	return nil, usageError{fmt.Sprintf("-model %q: want one of %s, or -weights DIR", name, strings.Join(benchModelNames(), ", "))}
}

// openBenchWeights loads a converted weights directory.
func openBenchWeights(ctx context.Context, dir string) (*benchSource, error) {
	m, err := weights.Load(ctx, weights.DirSource(dir), weights.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	varSrc, vaeSrc, pn, err := convert.Converted(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return &benchSource{desc: "converted weights " + dir, varSrc: varSrc, vaeSrc: vaeSrc,
		opt: varmodel.Options{PatchNums: pn}, converted: m.Manifest(), close: func() {}}, nil
}

// findUp looks for rel in the working directory and its parents, so that the fixture is found from the
// repository root (go run) and from a package directory (go test).
func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s in the working directory or its parents", rel)
		}
		dir = parent
	}
}

// runModelBench is `webvar bench -model` / `-weights`.
func runModelBench(f *benchFlags, stdout, stderr io.Writer) error {
	backends, err := benchBackends(f.backend)
	if err != nil {
		return err
	}
	quant := weights.Scheme(f.quant)
	if f.weightsDir == "" {
		if quant == "" {
			quant = weights.F32
		}
		if quant != weights.F32 && quant != weights.Int8 && quant != weights.Int4 {
			return usageError{fmt.Sprintf("-quant %q: want f32, int8 or int4", f.quant)}
		}
	}
	reps := f.reps
	if reps == 0 {
		reps = 3
	}
	ctx := context.Background()
	var src *benchSource
	name := f.model
	if f.weightsDir != "" {
		name = f.weightsDir
		src, err = openBenchWeights(ctx, f.weightsDir)
	} else {
		src, err = openBenchModel(f.model)
	}
	if err != nil {
		return err
	}
	defer src.close()

	varSrc := src.varSrc
	var download int64
	if m := src.converted; m != nil {
		quant = weights.Scheme(m.Meta["quant"])
		for _, c := range m.Chunks {
			download += c.Size
		}
	} else {
		// What `webvar convert -quant Q -no-encoder` writes for these checkpoints, without writing it.
		download, err = convert.DownloadBytes(src.varSrc, src.vaeSrc, convert.ConvertOptions{Quant: quant, NoEncoder: true})
		if err != nil {
			return err
		}
		if quant != weights.F32 {
			if varSrc, err = convert.QuantizedView(varSrc, quant); err != nil {
				return err
			}
		}
	}

	var errs []error
	for _, bname := range backends {
		b, closeBackend, err := newBackend(bname, f.threads, stderr)
		if err != nil {
			if f.backend == "all" && bname == "webgpu" {
				fmt.Fprintf(stderr, "webvar bench: skipping webgpu: %v\n", err)
				continue
			}
			return err
		}
		rep, err := benchModelOn(ctx, b, src, varSrc, f, reps, stderr)
		if err == nil {
			rep.Model, rep.Quant, rep.DownloadBytes = name, string(quant), download
			rep.Backend, rep.Device = bname, deviceName(b, f.threads)
			if strings.HasPrefix(bname, "cpu") {
				rep.Threads = f.threads
				if rep.Threads <= 0 {
					rep.Threads = runtime.NumCPU()
				}
			}
			if pb, ok := b.(interface{ PeakBytes() uint64 }); ok {
				rep.PeakGPUBytes = int64(pb.PeakBytes())
			}
			if ms, ok := b.(memoryStatser); ok {
				rep.GPUMemory = ms.MemoryStats()
			}
			rep.PeakRSSBytes = peakRSS()
			rep.WeightsSource = src.desc
			if f.json {
				enc := json.NewEncoder(stdout)
				enc.SetEscapeHTML(false)
				err = enc.Encode(rep)
			} else {
				printModelReport(stdout, rep)
			}
		}
		closeBackend()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", bname, err))
		}
	}
	return errors.Join(errs...)
}

// benchModelOn loads the pipeline on b and times it.
func benchModelOn(ctx context.Context, b core.Backend, src *benchSource, varSrc core.WeightSource, f *benchFlags,
	reps int, log io.Writer) (bench.ModelReport, error) {
	fmt.Fprintf(log, "bench %s: loading %s\n", b.Name(), src.desc)
	p, err := varmodel.LoadPipeline(varSrc, src.vaeSrc, b, src.opt)
	if err != nil {
		return bench.ModelReport{}, err
	}
	var loaded any
	if ms, ok := b.(memoryStatser); ok {
		loaded = ms.MemoryStats()
	}
	flops, err := bench.CountFLOPs(p, src.vaeSrc, 1, f.previews)
	if err != nil {
		return bench.ModelReport{}, err
	}
	// The sampling defaults of `webvar generate`; class 0 and seed 0 (speed depends on neither).
	req := varmodel.Request{Labels: []int{0}, CFG: 4, TopK: 900, TopP: 0.95, Previews: f.previews}
	runs, err := bench.RunModel(ctx, b, p, bench.ModelOptions{Request: req, Reps: reps, Log: log})
	if err != nil {
		return bench.ModelReport{}, err
	}
	rep, err := bench.NewModelReport(runs, flops)
	rep.GPUMemoryLoaded = loaded
	rep.Images, rep.Side, rep.PatchNums = 1, p.VAE.ImageSize(), p.VAR.Config().PatchNums
	return rep, err
}

// memoryStatser is a backend that breaks its GPU memory down (webgpu.Backend).
type memoryStatser interface{ MemoryStats() webgpu.MemoryStats }

// printModelReport prints a report as a table.
func printModelReport(w io.Writer, r bench.ModelReport) {
	mb := func(n int64) string {
		if n <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	fmt.Fprintf(w, "\nmodel %s: %s\n", r.Model, r.WeightsSource)
	fmt.Fprintf(w, "backend %s: %s\n", r.Backend, r.Device)
	fmt.Fprintf(w, "quant %s, previews %s; %d image of %dx%d, cfg 4, top-k 900, top-p 0.95; warm-up + %d timed runs\n",
		r.Quant, r.Previews, r.Images, r.Side, r.Side, r.Reps)
	fmt.Fprintf(w, "download %s (chunks of webvar convert -quant %s -no-encoder); peak RSS %s; peak GPU buffers %s\n",
		mb(r.DownloadBytes), r.Quant, mb(r.PeakRSSBytes), mb(r.PeakGPUBytes))
	fmt.Fprintf(w, "# GFLOP: matrix products (Linear, attention, convolutions), counted from the architecture\n")
	fmt.Fprintf(w, "%-22s %10s %10s %10s %10s\n", "part", "GFLOP", "median s", "min s", "GFLOP/s")
	row := func(name string, gflop, median float64, minimum string) {
		rate := "-"
		if median > 0 && gflop > 0 {
			rate = fmt.Sprintf("%.2f", gflop/median)
		}
		fmt.Fprintf(w, "%-22s %10.4g %10.4f %10s %10s\n", name, gflop, median, minimum, rate)
	}
	for i, s := range r.PerScaleSeconds {
		g, side := 0.0, ""
		if i < len(r.GFLOPPerScale) {
			g = r.GFLOPPerScale[i]
		}
		if i < len(r.PatchNums) {
			side = fmt.Sprintf(" (%dx%d)", r.PatchNums[i], r.PatchNums[i])
		}
		row(fmt.Sprintf("  scale %d%s", i+1, side), g, s, "-")
	}
	row("transformer", r.GFLOP.Transformer, r.TransformerSeconds, fmt.Sprintf("%.4f", r.TransformerMin))
	row("VQVAE decode", r.GFLOP.Decode, r.DecodeSeconds, fmt.Sprintf("%.4f", r.DecodeMin))
	row("previews", r.GFLOP.Preview, r.PreviewSeconds, "-")
	row("total", r.GFLOP.Total, r.TotalSeconds, fmt.Sprintf("%.4f", r.TotalSecondsMin))
	// The previews' share of a generation without them (issue 7 asks for at most 10%), in arithmetic and
	// in time.
	if gen, sec := r.GFLOP.Transformer+r.GFLOP.Decode, r.TransformerSeconds+r.DecodeSeconds; r.Previews != "none" && gen > 0 && sec > 0 {
		fmt.Fprintf(w, "previews (%s) add %.1f%% to the generation's GFLOP and %.1f%% to its time (transformer + decode)\n",
			r.Previews, 100*r.GFLOP.Preview/gen, 100*r.PreviewSeconds/sec)
	}
}
