package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/bench"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/webgpu"
)

type benchFlags struct {
	kernels    bool
	cpuProfile string
	backend    string
	size       string
	filter     string
	reps       int
	threads    int
	json       bool
	// The end-to-end benchmark (-model or -weights).
	model      string
	weightsDir string
	quant      string
	vaeQuant   string
	download   bool                   // print the download sizes only
	previews   []varmodel.PreviewMode // timed in turn on the same loaded model
	psnr       int                    // images for the preview quality table (0: none)
	// MAR: iterations and diffusion steps (0: the official 64 and 100)
	iters, diffSteps int
}

func parseBench(args []string, stderr io.Writer) (*benchFlags, error) {
	f := &benchFlags{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&f.kernels, "kernels", false, "time each engine op at VAR-d16 shapes")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the whole run to this file (go tool pprof): where the host's time goes, e.g. dispatch overhead or sampling on a GPU run")
	fs.StringVar(&f.model, "model", "", "time whole generations of a model: "+strings.Join(benchModelNames(), ", "))
	fs.StringVar(&f.weightsDir, "weights", "", "time whole generations of a converted weights directory (webvar convert) instead of -model")
	fs.StringVar(&f.quant, "quant", "", "with -model: storage of the transformer's Linear weights, f32, int8 or int4 (default f32); "+
		"a weights directory keeps its own")
	fs.StringVar(&f.vaeQuant, "vae-quant", "", "with -model: storage of the VQVAE decoder's conv weights, f32, f16, int8 or int4 "+
		"(as webvar convert -vae-quant; default: as -quant, but int8 when -quant is int4); int8/int4 run with the dequantized values")
	fs.BoolVar(&f.download, "download", false, "with -model: print only the bytes a browser downloads (webvar convert "+
		"-no-encoder's chunks, transformer and VQVAE) for -quant and -vae-quant, or for every combination of int8/int4 and "+
		"f16/int8/int4 when neither is given; generates nothing")
	previews := fs.String("previews", "none", "with -model: none, linear (map every scale's latent to RGB with the model's fitted "+
		"linear map and upsample it; models without one fall back to fast), fast (decode every scale's preview at that scale's "+
		"resolution and upsample it), full (decode every scale's preview at full resolution), or all (each of them in turn, "+
		"then a comparison)")
	fs.IntVar(&f.psnr, "preview-psnr", 0, "with -model/-weights: also generate this many images (class i*classes/N, seed 1000+i, the model's "+
		"sampling settings) and print per scale the PSNR of the linear and fast previews against the full-decode preview "+
		"(needs a model with a fitted linear map, e.g. -model fashionvar)")
	fs.StringVar(&f.backend, "backend", "all", "cpu, cpu-ref (the plain-Go reference code, without SIMD), webgpu, or all (cpu, then webgpu if an adapter opens)")
	fs.StringVar(&f.size, "size", bench.SizeD16, "kernel shapes: d16 (VAR-d16) or small (quick)")
	fs.StringVar(&f.filter, "filter", "", "only kernels whose names contain this (comma-separated: any of them)")
	fs.IntVar(&f.iters, "iters", 0, "with a MAR -model: autoregressive iterations (0: the official 64, at most the tokens per image)")
	fs.IntVar(&f.diffSteps, "diffusion-steps", 0, "with a MAR -model: diffusion steps per token (0: the official 100)")
	fs.IntVar(&f.reps, "reps", 0, "timed runs per kernel (0: as many as fill about 0.5 s, at least 1); with -model, per backend (0: 3)")
	fs.IntVar(&f.threads, "threads", 0, "CPU backend threads (0: all cores)")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per kernel (or model run) and backend instead of a table")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: webvar bench -kernels [flags]")
		fmt.Fprintln(stderr, "       webvar bench -model NAME [-quant f32|int8|int4] [-vae-quant f32|f16|int8|int4] [-download] [flags]")
		fmt.Fprintln(stderr, "       (NAME: "+strings.Join(benchModelNames(), ", ")+")")
		fmt.Fprintln(stderr, "       webvar bench -weights DIR [flags]")
		fmt.Fprintln(stderr, "\n-kernels times each engine op on each backend and prints its size (GFLOP: nominal arithmetic; MB:")
		fmt.Fprintln(stderr, "f32 data read and written once, 1 MB = 1e6 bytes) and the achieved GFLOP/s and GB/s. Times include")
		fmt.Fprintln(stderr, "waiting for the device to finish; pipeline compilation is excluded by a warm-up run.")
		fmt.Fprintln(stderr, "\n-model generates one image (batch 1, the family's official sampling settings: VAR cfg 4, top-k 900,")
		fmt.Fprintln(stderr, "top-p 0.95; FlexVAR cfg 2.5 linear, top-k 900, top-p 0.95, the 10-step schedule) once to warm up, then -reps")
		fmt.Fprintln(stderr, "times, and prints the median and minimum time per scale (FlexVAR: per step) and")
		fmt.Fprintln(stderr, "per part (transformer, VQVAE decode, previews) next to each part's GFLOP (matrix products, counted")
		fmt.Fprintln(stderr, "from the architecture), the peak memory and the bytes a browser downloads. Models: tiny is the test")
		fmt.Fprintln(stderr, "fixture testdata/var-tiny (found from the working directory upwards); d16 and d20 have the shapes of")
		fmt.Fprintln(stderr, "the released VAR-d16/d20 and random weights built in memory (speed does not depend on training);")
		fmt.Fprintln(stderr, "fashionvar is the embedded default model; flexvar-tiny is testdata/flexvar-tiny, flexvar-d16/d20/d24")
		fmt.Fprintln(stderr, "random weights in the released FlexVAR shapes with FlexVAE (-previews other than none decode every step);")
		fmt.Fprintln(stderr, "mar-tiny is testdata/mar-tiny, mar-b/l/h random weights in MAR-B/L/H's shapes with the KL-16 decoder")
		fmt.Fprintln(stderr, "(official sampling: 64 iterations x 100 diffusion steps, cfg 2.9 linear; -iters and -diffusion-steps")
		fmt.Fprintln(stderr, "change them; the parts are the transformer, the diffusion head and the decode); rq-tiny is")
		fmt.Fprintln(stderr, "testdata/rq-tiny, rq-480m/rq-1400m random weights in the released ImageNet configs' shapes with RQ-VAE.")
		fmt.Fprintln(stderr, "Models without a fitted linear preview map time linear")
		fmt.Fprintln(stderr, "previews with a placeholder map (its cost does not depend on its values), except a -weights directory,")
		fmt.Fprintln(stderr, "which renders fast previews instead, as generate would.")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	endToEnd := f.model != "" || f.weightsDir != ""
	var previewsErr error
	if *previews == "all" {
		f.previews = varmodel.PreviewModes()
	} else {
		var mode varmodel.PreviewMode
		mode, previewsErr = varmodel.ParsePreviewMode(*previews)
		f.previews = []varmodel.PreviewMode{mode}
	}
	switch {
	case fs.NArg() > 0:
		return nil, usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	case !f.kernels && !endToEnd:
		return nil, usageError{"give -kernels (the speed of each engine op) or -model NAME (see -h) or -weights DIR " +
			"(the speed of whole generations)"}
	case f.kernels && endToEnd:
		return nil, usageError{"-kernels and -model/-weights are separate benchmarks: give one"}
	case f.model != "" && f.weightsDir != "":
		return nil, usageError{"give either -model or -weights, not both"}
	case f.weightsDir != "" && f.quant != "":
		return nil, usageError{"-quant applies to -model: a weights directory keeps the quantization it was converted with"}
	case f.weightsDir != "" && (f.vaeQuant != "" || f.download):
		return nil, usageError{"-vae-quant and -download apply to -model: a weights directory keeps its own storage"}
	case !endToEnd && (f.quant != "" || f.vaeQuant != "" || f.download || *previews != "none" || f.psnr != 0):
		return nil, usageError{"-quant, -vae-quant, -download, -previews and -preview-psnr apply to -model and -weights, not to -kernels"}
	case previewsErr != nil:
		return nil, usageError{fmt.Sprintf("-previews %q: want none, linear, fast, full or all", *previews)}
	case f.psnr < 0:
		return nil, usageError{"-preview-psnr must be >= 0"}
	case f.reps < 0:
		return nil, usageError{"-reps must be >= 0"}
	case f.threads < 0:
		return nil, usageError{"-threads must be >= 0"}
	}
	return f, nil
}

func runBench(args []string, stdout, stderr io.Writer) error {
	f, err := parseBench(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if !f.kernels {
		return runModelBench(f, stdout, stderr)
	}
	backends, err := benchBackends(f.backend)
	if err != nil {
		return err
	}
	// Check size and filter before opening any device, so a typo costs no GPU start-up.
	ks, err := bench.Select(f.size, f.filter)
	if err != nil {
		return usageError{err.Error()}
	}
	t := newBenchTable(stdout, ks)
	if !f.json {
		fmt.Fprintln(stdout, "# GFLOP: nominal operation count; MB: f32 bytes read + written once (1e6 bytes);")
		fmt.Fprintln(stdout, "# ms/run: mean of the timed runs, each batch ended by a readback (device work included).")
	}
	var errs []error
	for _, name := range backends {
		b, closeBackend, err := newBackend(name, f.threads, stderr)
		if err != nil {
			if f.backend == "all" && name == "webgpu" {
				fmt.Fprintf(stderr, "webvar bench: skipping webgpu: %v\n", err)
				continue
			}
			return err
		}
		device := deviceName(b, f.threads)
		if !f.json {
			t.header(name, device, f.size)
		}
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false) // shapes contain "->"
		_, err = bench.RunKernels(b, bench.KernelOptions{
			Size: f.size, Filter: f.filter, Reps: f.reps, Device: device, Log: stderr,
			OnResult: func(r bench.KernelResult) {
				if f.json {
					// Encode cannot fail for this struct; a broken stdout shows up in the final error.
					_ = enc.Encode(r)
				} else {
					t.row(r)
				}
			},
		})
		closeBackend()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// benchBackends lists the backends -backend names: all is cpu, then webgpu.
func benchBackends(flag string) ([]string, error) {
	switch flag {
	case "cpu", "cpu-ref", "webgpu":
		return []string{flag}, nil
	case "all":
		return []string{"cpu", "webgpu"}, nil
	}
	return nil, usageError{fmt.Sprintf("-backend %q: want cpu, cpu-ref, webgpu or all", flag)}
}

// deviceName describes what a backend runs on. A software rasterizer (lavapipe reports itself as
// llvmpipe) is labelled as such, so its numbers are not mistaken for a GPU's.
func deviceName(b core.Backend, threads int) string {
	g, ok := b.(*webgpu.Backend)
	if !ok {
		return bench.CPUDevice(threads)
	}
	s := g.Adapter().String()
	lower := strings.ToLower(s)
	for _, soft := range []string{"llvmpipe", "lavapipe", "swiftshader", "softpipe", "microsoft basic render"} {
		if strings.Contains(lower, soft) {
			return s + " [software rasterizer: CPU emulation, not a GPU]"
		}
	}
	return s
}

// benchTable prints aligned rows; the widths come from the selected kernels, so rows can be printed as
// each kernel finishes.
type benchTable struct {
	w           io.Writer
	name, shape int
}

func newBenchTable(w io.Writer, ks []bench.Kernel) *benchTable {
	t := &benchTable{w: w, name: len("kernel"), shape: len("shape")}
	for _, k := range ks {
		t.name = max(t.name, len(k.Name))
		t.shape = max(t.shape, len(k.Shape))
	}
	return t
}

func (t *benchTable) header(backend, device, size string) {
	fmt.Fprintf(t.w, "\nbackend %s, size %s: %s\n", backend, size, device)
	fmt.Fprintf(t.w, "%-*s  %-*s %9s %9s %10s %9s %8s\n", t.name, "kernel", t.shape, "shape",
		"GFLOP", "MB", "ms/run", "GFLOP/s", "GB/s")
}

func (t *benchTable) row(r bench.KernelResult) {
	if r.Error != "" {
		fmt.Fprintf(t.w, "%-*s  %-*s error: %s\n", t.name, r.Kernel, t.shape, r.Shape, r.Error)
		return
	}
	// Data-movement kernels do no arithmetic: a dash, not "0.000 GFLOP/s", says the column does not apply.
	gflop, gflops := "-", "-"
	if r.FLOPs > 0 {
		gflop, gflops = fmt.Sprintf("%.4g", float64(r.FLOPs)/1e9), fmt.Sprintf("%.2f", r.GFLOPS)
	}
	// %g keeps the small size's kilobyte operands and sub-microsecond runs readable (0.000262, not 0.000)
	// in the same columns.
	fmt.Fprintf(t.w, "%-*s  %-*s %9s %9.4g %10.4g %9s %8.2f\n", t.name, r.Kernel, t.shape, r.Shape,
		gflop, float64(r.Bytes)/1e6, r.Seconds*1e3, gflops, r.GBPS)
}
