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
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/bench"
	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/vqvae"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/internal/randmodel"
	"github.com/webvar/webvar/loader"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
	"github.com/webvar/webvar/weights/fashionvar"
)

// benchSource is a model for `webvar bench -model`/`-weights`: its two weight sources and what they are.
type benchSource struct {
	desc           string            // one line for the table's header
	family         string            // "var" or "flexvar"
	varSrc, vaeSrc core.WeightSource // the transformer's and the VQVAE's tensors
	opt            varmodel.Options
	schedule       []int // FlexVAR: the steps' grid sides
	// converted is set for a weights directory: its quantization is fixed, its download is its chunks.
	converted *weights.Manifest
	close     func()
}

// benchModelNames are the names -model accepts.
func benchModelNames() []string {
	return []string{"tiny", "d16", "d20", fashionvar.Name, "flexvar-tiny", "flexvar-d16", "flexvar-d20", "flexvar-d24",
		"mar-tiny", "mar-b", "mar-l", "mar-h", "rq-tiny", "rq-480m", "rq-1400m"}
}

// openBenchModel maps a model name to its weights. This is the one place a new name is wired in (the
// default model, once it is embedded, becomes a case returning its converted sources).
func openBenchModel(name string) (*benchSource, error) {
	switch name {
	case "tiny":
		return openBenchFixture("tiny", "var-tiny", "var", varmodel.Options{PatchNums: []int{1, 2, 3, 4}}, nil)
	case "d16", "d20":
		depth := 16
		if name == "d20" {
			depth = 20
		}
		vs, as := randmodel.Official(depth)
		// Generation never runs the encoder: leave it out, as `webvar convert -no-encoder` does, so that
		// memory and download describe what generating needs.
		as.Encoder = false
		varSrc, vaeSrc, err := randomSources(randmodel.VARTensors(vs), randmodel.VAETensors(as))
		if err != nil {
			return nil, err
		}
		return &benchSource{
			desc: fmt.Sprintf("random weights in VAR-d%d's shapes (width %d, %d heads, %d scales, VQVAE ch %d; drawn in memory)",
				depth, vs.C, vs.Heads, len(vs.PatchNums), as.Ch),
			varSrc: varSrc, vaeSrc: vaeSrc, close: func() {},
		}, nil
	case fashionvar.Name:
		return openBenchConverted(context.Background(), fashionvar.Source(), "embedded model "+fashionvar.Name)
	case "flexvar-tiny":
		return openBenchFixture("flexvar-tiny", "flexvar-tiny", "flexvar", varmodel.Options{}, []int{1, 2, 3, 4})
	case "flexvar-d16", "flexvar-d20", "flexvar-d24":
		var depth int
		fmt.Sscanf(strings.TrimPrefix(name, "flexvar-d"), "%d", &depth)
		vs, as := randmodel.OfficialFlexVAR(depth)
		as.Encoder = false // generation never runs the encoder, as `webvar convert -no-encoder`
		varSrc, vaeSrc, err := randomSources(randmodel.FlexVARTensors(vs), randmodel.LlamaGenVQTensors(as))
		if err != nil {
			return nil, err
		}
		return &benchSource{
			desc: fmt.Sprintf("random weights in FlexVAR-d%d's shapes (width %d, %d heads, %d codes; FlexVAE ch %d, z %d; drawn in memory)",
				depth, vs.C, vs.Heads, vs.V, as.Ch, as.Z),
			family: "flexvar", varSrc: varSrc, vaeSrc: vaeSrc, schedule: flexvar.DefaultSchedule, close: func() {},
		}, nil
	case "mar-tiny":
		return openBenchFixtureFiles("mar-tiny", "mar-tiny", "mar", "mar.pth", "vae.pth", varmodel.Options{Heads: 4}, nil)
	case "rq-tiny":
		return openBenchFixtureFiles("rq-tiny", "rq-tiny", "rq", "stage2.pth", "stage1.pth", varmodel.Options{Heads: 2}, nil)
	case "rq-480m", "rq-1400m":
		rs, vs, err := randmodel.OfficialRQ(strings.TrimPrefix(name, "rq-"))
		if err != nil {
			return nil, err
		}
		vs.Encoder = false // generation never runs the encoder, as `webvar convert -no-encoder`
		varSrc, vaeSrc, err := randomSources(randmodel.RQTensors(rs), randmodel.RQVAETensors(vs))
		if err != nil {
			return nil, err
		}
		return &benchSource{
			desc: fmt.Sprintf("random weights in the shapes of RQ-Transformer %s as its official config gives them (width %d, %d body + %d head layers, %d heads, %dx%dx%d codes of %d; RQ-VAE ch %d; drawn in memory)",
				strings.TrimPrefix(name, "rq-"), rs.C, rs.BodyLayers, rs.HeadLayers, rs.Heads, rs.H, rs.W, rs.D, rs.V, vs.Ch),
			family: "rq", varSrc: varSrc, vaeSrc: vaeSrc, opt: varmodel.Options{Heads: rs.Heads}, close: func() {},
		}, nil
	case "mar-b", "mar-l", "mar-h":
		ms, ks, err := randmodel.OfficialMAR(strings.TrimPrefix(name, "mar-"))
		if err != nil {
			return nil, err
		}
		ks.Encoder = false // generation never runs the encoder, as `webvar convert -no-encoder`
		varSrc, vaeSrc, err := randomSources(randmodel.MARTensors(ms), randmodel.KLVAETensors(ks))
		if err != nil {
			return nil, err
		}
		return &benchSource{
			desc: fmt.Sprintf("random weights in MAR-%s's shapes (encoder and decoder %d x %d, diffusion MLP %d x %d, %d tokens; KL-16 ch %d; drawn in memory)",
				strings.ToUpper(strings.TrimPrefix(name, "mar-")), ms.Depth, ms.C, ms.DiffDepth, ms.DiffW, ms.SeqLen, ks.Ch),
			family: "mar", varSrc: varSrc, vaeSrc: vaeSrc, close: func() {},
		}, nil
	}
	return nil, usageError{fmt.Sprintf("-model %q: want one of %s, or -weights DIR", name, strings.Join(benchModelNames(), ", "))}
}

// randomSources serves a random transformer and tokenizer (randmodel.Source, drawn when loaded).
func randomSources(transformer, tokenizer []randmodel.Tensor) (varSrc, vaeSrc core.WeightSource, err error) {
	vs, err := randmodel.NewSource(transformer, randmodel.SeedVAR)
	if err != nil {
		return nil, nil, err
	}
	as, err := randmodel.NewSource(tokenizer, randmodel.SeedVAE)
	if err != nil {
		return nil, nil, err
	}
	return vs, as, nil
}

// openBenchFixture opens a test fixture's two checkpoints (testdata/NAME, found from the working
// directory upwards) for -model tiny and flexvar-tiny; model is the -model name for messages.
func openBenchFixture(model, name, family string, opt varmodel.Options, schedule []int) (*benchSource, error) {
	return openBenchFixtureFiles(model, name, family, "var.pth", "vae.pth", opt, schedule)
}

// openBenchFixtureFiles is openBenchFixture for a fixture whose two checkpoints have other names (mar.pth,
// stage2.pth + stage1.pth).
func openBenchFixtureFiles(model, name, family, varFile, vaeFile string, opt varmodel.Options, schedule []int) (*benchSource, error) {
	dir, err := findUp(filepath.Join("testdata", name))
	if err != nil {
		return nil, fmt.Errorf("-model %s needs the test fixture: %w (run from the webvar repository)", model, err)
	}
	vc, err := loader.Open(filepath.Join(dir, varFile))
	if err != nil {
		return nil, err
	}
	ac, err := loader.Open(filepath.Join(dir, vaeFile))
	if err != nil {
		vc.Close()
		return nil, err
	}
	return &benchSource{desc: name + " test fixture (" + dir + ")", family: family, varSrc: vc.WeightSource(),
		vaeSrc: ac.WeightSource(), opt: opt, schedule: schedule, close: func() { vc.Close(); ac.Close() }}, nil
}

// openBenchConverted loads converted weights (a -weights directory or the embedded model).
func openBenchConverted(ctx context.Context, src weights.Source, name string) (*benchSource, error) {
	m, err := weights.Load(ctx, src, weights.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	varSrc, vaeSrc, _, pn, err := convert.Converted(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &benchSource{desc: "converted weights " + name, varSrc: varSrc, vaeSrc: vaeSrc,
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
	quant, vaeQuant := weights.Scheme(f.quant), weights.Scheme(f.vaeQuant)
	if vaeQuant != "" && !vaeQuant.Valid() {
		return usageError{fmt.Sprintf("-vae-quant %q: want f32, f16, int8 or int4", f.vaeQuant)}
	}
	if f.download {
		if quant != "" && quant != weights.Int8 && quant != weights.Int4 && quant != weights.F32 {
			return usageError{fmt.Sprintf("-quant %q: want f32, int8 or int4", f.quant)}
		}
		return printDownloads(f, quant, vaeQuant, stdout)
	}
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
		src, err = openBenchConverted(ctx, weights.DirSource(f.weightsDir), f.weightsDir)
	} else {
		src, err = openBenchModel(f.model)
	}
	if err != nil {
		return err
	}
	defer src.close()

	varSrc := src.varSrc
	var download int64
	if f.psnr > 0 && (src.converted == nil || src.converted.Meta[convert.MetaLinearPreview] == "") {
		return usageError{"-preview-psnr needs a model with a fitted linear preview map (e.g. -model " + fashionvar.Name +
			", or -weights DIR converted with -preview-fit)"}
	}
	if src.converted != nil && (f.quant != "" || f.vaeQuant != "") {
		return usageError{fmt.Sprintf("-quant and -vae-quant apply to -model tiny, d16 and d20: %s keeps the quantization it was converted with", name)}
	}
	if m := src.converted; m != nil {
		quant, vaeQuant = weights.Scheme(m.Meta["quant"]), weights.Scheme(m.Meta[convert.MetaVAEQuant])
		for _, c := range m.Chunks {
			download += c.Size
		}
	} else {
		// What `webvar convert -quant Q -no-encoder` writes for these checkpoints, without writing it.
		if vaeQuant == "" {
			vaeQuant = convert.VAEQuantFor(quant)
		}
		download, err = convert.DownloadBytes(src.varSrc, src.vaeSrc, convert.ConvertOptions{Quant: quant, VAEQuant: vaeQuant, NoEncoder: true})
		if err != nil {
			return err
		}
		if _, ok := vaeQuant.Quant(); ok {
			// The decoder computes with the values a converted directory would serve.
			if src.vaeSrc, err = convert.VAEQuantizedView(src.vaeSrc, vaeQuant); err != nil {
				return err
			}
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
		reports, quality, err := benchModelOn(ctx, b, src, varSrc, f, reps, stderr)
		for i := range reports {
			rep := &reports[i]
			rep.Model, rep.Quant, rep.VAEQuant, rep.DownloadBytes = name, string(quant), string(vaeQuant), download
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
				if e := enc.Encode(rep); e != nil {
					err = e
				}
			} else {
				printModelReport(stdout, *rep)
			}
		}
		if err == nil && !f.json && len(reports) > 1 {
			printPreviewComparison(stdout, reports)
		}
		if err == nil && quality != nil {
			if f.json {
				enc := json.NewEncoder(stdout)
				err = enc.Encode(map[string]any{"model": name, "backend": bname, "preview_psnr_images": f.psnr, "preview_quality": quality})
			} else {
				printPreviewQuality(stdout, name, f.psnr, quality)
			}
		}
		closeBackend()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", bname, err))
		}
	}
	return errors.Join(errs...)
}

// downloadRow is one line of `webvar bench -download`.
type downloadRow struct {
	Model            string `json:"model"`
	Quant            string `json:"quant"`
	VAEQuant         string `json:"vae_quant"`
	TransformerBytes int64  `json:"transformer_bytes"`
	VQVAEBytes       int64  `json:"vqvae_bytes"`
	DownloadBytes    int64  `json:"download_bytes"`
}

// printDownloads is `webvar bench -model M -download`: the chunk bytes of webvar convert -no-encoder for
// the given storage, or for every quantized combination when neither -quant nor -vae-quant is given,
// computed from the shapes (and, for the f16 decision, the values) without converting or generating.
func printDownloads(f *benchFlags, quant, vaeQuant weights.Scheme, stdout io.Writer) error {
	src, err := openBenchModel(f.model)
	if err != nil {
		return err
	}
	defer src.close()
	quants, vaeQuants := []weights.Scheme{quant}, []weights.Scheme{vaeQuant}
	switch {
	case quant == "" && vaeQuant == "":
		quants = []weights.Scheme{weights.Int8, weights.Int4}
		vaeQuants = []weights.Scheme{weights.F16, weights.Int8, weights.Int4}
	case quant == "":
		quants = []weights.Scheme{weights.Int8}
	}
	if !f.json {
		fmt.Fprintf(stdout, "model %s: %s\n", f.model, src.desc)
		fmt.Fprintf(stdout, "download: chunks of webvar convert -quant Q -vae-quant V -no-encoder (1 MB = 1e6 bytes)\n")
		fmt.Fprintf(stdout, "%-6s %-9s %15s %10s %10s\n", "quant", "vae-quant", "transformer MB", "VQVAE MB", "total MB")
	}
	enc := json.NewEncoder(stdout)
	for _, q := range quants {
		for _, vq := range vaeQuants {
			if vq == "" {
				vq = convert.VAEQuantFor(q)
			}
			size, err := convert.DownloadSizes(src.varSrc, src.vaeSrc, convert.ConvertOptions{Quant: q, VAEQuant: vq, NoEncoder: true})
			if err != nil {
				return err
			}
			row := downloadRow{f.model, string(q), string(vq), size.Transformer, size.VQVAE, size.Total()}
			if f.json {
				if err := enc.Encode(row); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(stdout, "%-6s %-9s %15.1f %10.1f %10.1f\n", q, vq, float64(row.TransformerBytes)/1e6,
				float64(row.VQVAEBytes)/1e6, float64(row.DownloadBytes)/1e6)
		}
	}
	return nil
}

// benchModelOn loads the pipeline on b and times it with each preview mode of f in turn, then, with
// -preview-psnr, measures the previews' quality.
func benchModelOn(ctx context.Context, b core.Backend, src *benchSource, varSrc core.WeightSource, f *benchFlags,
	reps int, log io.Writer) ([]bench.ModelReport, []bench.ScaleQuality, error) {
	fmt.Fprintf(log, "bench %s: loading %s\n", b.Name(), src.desc)
	if src.family == "flexvar" {
		reps, err := benchFlexVAROn(ctx, b, src, varSrc, f, reps, log)
		return reps, nil, err
	}
	if src.family == "mar" {
		reps, err := benchMAROn(ctx, b, src, varSrc, f, reps, log)
		return reps, nil, err
	}
	if src.family == "rq" {
		reps, err := benchRQOn(ctx, b, src, varSrc, f, reps, log)
		return reps, nil, err
	}
	p, err := varmodel.LoadPipeline(varSrc, src.vaeSrc, b, src.opt)
	if err != nil {
		return nil, nil, err
	}
	mapDesc, err := attachPreviewMap(p, src)
	if err != nil {
		return nil, nil, err
	}
	var loaded any
	if ms, ok := b.(memoryStatser); ok {
		loaded = ms.MemoryStats()
	}
	var out []bench.ModelReport
	for _, mode := range f.previews {
		if p.EffectivePreviews(mode) != mode {
			fmt.Fprintf(log, "bench: %s has no linear preview map: %s previews render as %s\n", src.desc, mode, p.EffectivePreviews(mode))
		}
		flops, err := bench.CountFLOPs(p, src.vaeSrc, 1, mode)
		if err != nil {
			return nil, nil, err
		}
		// The sampling defaults of `webvar generate`; class 0 and seed 0 (speed depends on neither).
		d := varmodel.OfficialSampling
		req := varmodel.Request{Labels: []int{0}, CFG: d.CFG, TopK: d.TopK, TopP: d.TopP, Previews: mode}
		opt := bench.ModelOptions{Request: req, Reps: reps, Log: log}
		ht, _ := b.(hostTimer)
		var ht0 webgpu.HostTimes
		if ht != nil {
			opt.Timed = func() { ht0 = ht.HostTimes() }
		}
		runs, err := bench.RunModel(ctx, b, p, opt)
		if err != nil {
			return nil, nil, err
		}
		var perImage *webgpu.HostTimes
		if ht != nil {
			d := ht.HostTimes().Sub(ht0).Per(reps)
			perImage = &d
		}
		rep, err := bench.NewModelReport(runs, flops)
		if err != nil {
			return nil, nil, err
		}
		rep.GPUMemoryLoaded = loaded
		rep.Family = "var"
		rep.Sampling = fmt.Sprintf("cfg %g, top-k %d, top-p %g", d.CFG, d.TopK, d.TopP)
		if perImage != nil {
			rep.GPUHost = perImage
		}
		rep.Images, rep.Side, rep.PatchNums = 1, p.VAE.ImageSize(), p.VAR.Config().PatchNums
		if flops.Mode == varmodel.PreviewLinear {
			rep.PreviewMap = mapDesc
		}
		out = append(out, rep)
	}
	if f.psnr == 0 {
		return out, nil, nil
	}
	d := varmodel.OfficialSampling
	s := convert.Sampling{CFG: d.CFG, TopK: d.TopK, TopP: d.TopP}
	if d, err := convert.SamplingOf(src.converted); err != nil {
		return nil, nil, err
	} else if d != nil {
		s = *d
	}
	fmt.Fprintf(log, "bench %s: preview quality on %d images\n", b.Name(), f.psnr)
	q, err := bench.PreviewQuality(ctx, b, p, convert.PreviewFitRequests(p.VAR.Config().Classes, f.psnr, previewCheckSeed, s))
	return out, q, err
}

// previewCheckSeed is the first seed of -preview-psnr's images: `webvar convert -preview-fit` fits the map
// to seeds from 0, and a map is judged on images it was not fitted to.
const previewCheckSeed = 1000

// attachPreviewMap gives p the linear preview map of a converted model's metadata, or for models that
// cannot have one (random weights, the test fixture) a placeholder whose cost is that of a real map (the
// map's values do not change its arithmetic). It says which.
func attachPreviewMap(p *varmodel.Pipeline, src *benchSource) (string, error) {
	cvae := p.VAE.Config().Cvae
	if src.converted != nil {
		lp, err := convert.LinearPreviewOf(src.converted, cvae)
		if err != nil || lp == nil {
			return "", err
		}
		p.LinearPreview = lp
		return "fitted (manifest meta " + convert.MetaLinearPreview + ")", nil
	}
	w := make([]float32, 3*(cvae+1))
	for i := range w {
		w[i] = 1 / float32(cvae)
	}
	lp, err := vqvae.NewLinearPreview(cvae, w)
	p.LinearPreview = lp
	return "placeholder (these weights have no fitted map; its cost does not depend on its values)", err
}

// hostTimer is a backend that accounts for its host-side time (webgpu.Backend).
type hostTimer interface{ HostTimes() webgpu.HostTimes }

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
	fmt.Fprintf(w, "quant %s, previews %s; %d image of %dx%d, %s; warm-up + %d timed runs\n",
		r.Quant, r.Previews, r.Images, r.Side, r.Side, r.Sampling, r.Reps)
	if r.PreviewMap != "" {
		fmt.Fprintf(w, "linear preview map: %s\n", r.PreviewMap)
	}
	vq := ""
	if r.VAEQuant != "" {
		vq = " -vae-quant " + r.VAEQuant
	}
	fmt.Fprintf(w, "download %s (chunks of webvar convert -quant %s%s -no-encoder); peak RSS %s; peak GPU buffers %s\n",
		mb(r.DownloadBytes), r.Quant, vq, mb(r.PeakRSSBytes), mb(r.PeakGPUBytes))
	if h, ok := r.GPUHost.(*webgpu.HostTimes); ok {
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		fmt.Fprintf(w, "host per image: waiting for the GPU %.1f ms; recording %.1f ms (%d dispatches); submitting %.1f ms (%d submissions); creating buffers %.1f ms; copying readbacks %.1f ms\n",
			ms(h.Wait), ms(h.Record), h.Dispatches, ms(h.Submit), h.Submissions, ms(h.Create), ms(h.Copy))
	}
	if r.Family == "mar" {
		printMARReport(w, r)
		return
	}
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
		noun := "scale"
		if r.Family == "flexvar" {
			noun = "step"
		}
		row(fmt.Sprintf("  %s %d%s", noun, i+1, side), g, s, "-")
	}
	row("transformer", r.GFLOP.Transformer, r.TransformerSeconds, fmt.Sprintf("%.4f", r.TransformerMin))
	row("VQVAE decode", r.GFLOP.Decode, r.DecodeSeconds, fmt.Sprintf("%.4f", r.DecodeMin))
	row("previews", r.GFLOP.Preview, r.PreviewSeconds, "-")
	row("total", r.GFLOP.Total, r.TotalSeconds, fmt.Sprintf("%.4f", r.TotalSecondsMin))
	// The previews' share of a generation without them (issue 7 asks for at most 10%), in arithmetic and
	// in time.
	if gen, sec := r.GFLOP.Transformer+r.GFLOP.Decode, r.TransformerSeconds+r.DecodeSeconds; r.Previews != "none" && gen > 0 && sec > 0 {
		fmt.Fprintf(w, "previews (%s) add %s to the generation's GFLOP and %s to its time (transformer + decode)\n",
			r.Previews, percent(r.GFLOP.Preview/gen), percent(r.PreviewSeconds/sec))
	}
}

// printPreviewComparison puts the preview modes timed on one backend side by side: what each adds to a
// generation without previews (issue 7 asks for at most 10%).
func printPreviewComparison(w io.Writer, reps []bench.ModelReport) {
	fmt.Fprintf(w, "\npreviews compared (model %s, backend %s; medians; %% of transformer + decode of the same run)\n", reps[0].Model, reps[0].Backend)
	fmt.Fprintf(w, "%-8s %12s %10s %10s %10s %10s\n", "previews", "preview s", "% time", "GFLOP", "% GFLOP", "total s")
	for _, r := range reps {
		sec, gen := r.TransformerSeconds+r.DecodeSeconds, r.GFLOP.Transformer+r.GFLOP.Decode
		pt, pg := "-", "-"
		if sec > 0 && gen > 0 {
			pt, pg = percent(r.PreviewSeconds/sec), percent(r.GFLOP.Preview/gen)
		}
		if r.Previews == varmodel.PreviewNone.String() {
			pt, pg = "-", "-"
		}
		fmt.Fprintf(w, "%-8s %12.4f %10s %10.4g %10s %10.4f\n", r.Previews, r.PreviewSeconds, pt, r.GFLOP.Preview, pg, r.TotalSeconds)
	}
}

// printPreviewQuality prints PreviewQuality's table.
func printPreviewQuality(w io.Writer, model string, images int, q []bench.ScaleQuality) {
	fmt.Fprintf(w, "\npreview quality (model %s, %d images, seeds %d..%d): PSNR in dB against the full-decode preview of the same scale\n",
		model, images, previewCheckSeed, previewCheckSeed+images-1)
	fmt.Fprintf(w, "%-14s %10s %10s\n", "scale", "linear", "fast")
	var sl, sf float64
	for _, s := range q {
		fmt.Fprintf(w, "%-14s %10.2f %10.2f\n", fmt.Sprintf("%d (%dx%d)", s.Scale+1, s.PN, s.PN), s.LinearPSNR, s.FastPSNR)
		sl += s.LinearPSNR
		sf += s.FastPSNR
	}
	if len(q) > 0 {
		fmt.Fprintf(w, "%-14s %10.2f %10.2f\n", "mean", sl/float64(len(q)), sf/float64(len(q)))
	}
}

// percent formats a fraction with one decimal, or two significant digits below 1% (linear previews are
// thousandths of a percent).
func percent(f float64) string {
	if p := 100 * f; p < 1 {
		return fmt.Sprintf("%.2g%%", p)
	}
	return fmt.Sprintf("%.1f%%", 100*f)
}

// benchFlexVAROn times FlexVAR generations (the official settings and schedule, class 0, seed 0) on b,
// once per -previews mode: "none" decodes the last step only, any other mode decodes every step (each
// FlexVAR step is a whole image; that is what the page's animation shows).
func benchFlexVAROn(ctx context.Context, b core.Backend, src *benchSource, varSrc core.WeightSource, f *benchFlags,
	reps int, log io.Writer) ([]bench.ModelReport, error) {
	if f.psnr > 0 {
		return nil, usageError{"-preview-psnr is for VAR models (linear preview maps)"}
	}
	p, err := flexvar.LoadPipeline(varSrc, src.vaeSrc, b, 0)
	if err != nil {
		return nil, err
	}
	var loaded any
	if ms, ok := b.(memoryStatser); ok {
		loaded = ms.MemoryStats()
	}
	d := flexvar.OfficialDefaults
	d.Schedule = src.schedule
	g := p.Generator(b, d)
	sched := flexvar.Square(src.schedule)
	c := p.VAR.Config()
	tokens := make([]int, len(sched))
	for i, gr := range sched {
		tokens[i] = gr.N()
	}
	steps := bench.StepFLOPs(flexvar.Tensors(c), c.Depth, c.C, tokens, 1)
	var out []bench.ModelReport
	for _, mode := range f.previews {
		previews := mode != varmodel.PreviewNone
		fl := bench.ModelFLOPs{Scales: steps, Decode: p.VAE.DecodeFLOPs(sched[len(sched)-1])}
		for i, s := range steps {
			fl.Transformer += s
			if previews && i < len(sched)-1 {
				fl.Preview += p.VAE.DecodeFLOPs(sched[i])
			}
		}
		opt := bench.GeneratorOptions{Request: gen.Request{Labels: []int{0}, Previews: previews}, Reps: reps, Log: log}
		ht, _ := b.(hostTimer)
		var ht0 webgpu.HostTimes
		if ht != nil {
			opt.Timed = func() { ht0 = ht.HostTimes() }
		}
		runs, err := bench.RunGenerator(ctx, b.Name(), g, opt)
		if err != nil {
			return nil, err
		}
		rep, err := bench.NewModelReport(runs, fl)
		if err != nil {
			return nil, err
		}
		rep.Family = "flexvar"
		rep.Sampling = fmt.Sprintf("cfg %g (%v), top-k %d, top-p %g, max-pn %d, steps %v", d.CFG, d.CFGMode, d.TopK, d.TopP, d.MaxPN, src.schedule)
		rep.Previews = "none"
		if previews {
			rep.Previews = "steps"
		}
		if ht != nil {
			d := ht.HostTimes().Sub(ht0).Per(reps)
			rep.GPUHost = &d
		}
		rep.GPUMemoryLoaded = loaded
		h, _ := p.ImageSize(sched)
		rep.Images, rep.Side, rep.PatchNums = 1, h, src.schedule
		out = append(out, rep)
	}
	return out, nil
}
