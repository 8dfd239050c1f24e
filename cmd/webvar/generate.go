package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/loader"
	"github.com/webvar/webvar/weights/fashionvar"
)

type generateFlags struct {
	model    modelFlags
	sampling samplingFlags
	flex     flexFlags
	class    int
	seed     uint64
	backend  string
	threads  int
	out      string
	tokens   string
	scales   string
	preview  varmodel.PreviewMode // of the -scales PNGs
	// Grid mode: one image per (class, seed), one row per class.
	classes, seeds string
	samples        string
}

func parseGenerate(args []string, stderr io.Writer) (*generateFlags, error) {
	f := &generateFlags{}
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.model.register(fs)
	f.sampling.register(fs)
	f.flex.register(fs)
	fs.IntVar(&f.class, "class", 0, "class label (ImageNet index for official checkpoints)")
	fs.Uint64Var(&f.seed, "seed", 0, "random seed: the same seed gives the same image on the same backend")
	fs.StringVar(&f.backend, "backend", "cpu", "compute backend: cpu, webgpu, or cpu-ref (the plain-Go reference code, without SIMD)")
	fs.IntVar(&f.threads, "threads", 0, "CPU backend threads (0: all cores)")
	fs.StringVar(&f.out, "out", "", "output PNG path (the grid with -classes/-seeds)")
	fs.StringVar(&f.tokens, "tokens", "", "also write the sampled tokens as JSON {\"tokens\": [[scale 0 ids], ...]} (MAR: {\"latents\": [[token 0's values], ...]}, raster order; RQ: {\"codes\": [[[d0, d1, ...] per column] per row]})")
	fs.StringVar(&f.scales, "scales", "", "also write one preview PNG per scale into this directory")
	preview := fs.String("scales-preview", "full", "with -scales: full (decode every scale's f_hat at full resolution), fast "+
		"(decode it at the scale's own resolution and upsample) or linear (map it to RGB with the model's fitted linear map and "+
		"upsample: what the browser app and preview window show for a model with a map; without one, fast)")
	fs.StringVar(&f.classes, "classes", "", "grid mode: classes, one row each: 'all', a range '0-9' or a list '1,4,7'")
	fs.StringVar(&f.seeds, "seeds", "", "grid mode: seeds, one column each: a range '0-7' or a list (default 0-7)")
	fs.StringVar(&f.samples, "samples", "", "grid mode: also write each image as DIR/class<C>_seed<S>.png (the same image -class C -seed S gives)")
	if err := parseModelFlagSet(fs, args, &f.model, &f.sampling, &f.flex); err != nil {
		return nil, err
	}
	grid := f.classes != "" || f.seeds != ""
	mode, err := varmodel.ParsePreviewMode(*preview)
	if err != nil || mode == varmodel.PreviewNone {
		return nil, usageError{fmt.Sprintf("-scales-preview %q: want full, fast or linear", *preview)}
	}
	f.preview = mode
	switch {
	case f.out == "":
		return nil, usageError{"-out is required (the PNG to write)"}
	case grid && (f.tokens != "" || f.scales != ""):
		return nil, usageError{"-tokens and -scales are for one image, not with -classes/-seeds"}
	case !grid && f.samples != "":
		return nil, usageError{"-samples needs grid mode (-classes and/or -seeds)"}
	}
	return f, nil
}

// parseRange parses "all" (0..n-1 when n > 0), "a-b" or "a,b,c" into non-negative integers.
func parseRange(s string, n int) ([]int, error) {
	if s == "all" {
		if n <= 0 {
			return nil, fmt.Errorf("'all' is not known here")
		}
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := strconv.Atoi(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil || a < 0 || b < a || b-a >= 1<<16 {
			return nil, fmt.Errorf("%q is not a range a-b with 0 <= a <= b", s)
		}
		var out []int
		for v := a; v <= b; v++ {
			out = append(out, v)
		}
		return out, nil
	}
	out, err := parseInts(s)
	for _, v := range out {
		if v < 0 {
			return nil, fmt.Errorf("%q: values must be >= 0", s)
		}
	}
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("empty list")
	}
	return out, err
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
	case "cpu-ref":
		return cpu.NewReference(threads), func() {}, nil
	case "webgpu":
		b, err := webgpu.New()
		if err != nil {
			return nil, nil, fmt.Errorf("%w (use -backend cpu to run without a GPU)", err)
		}
		fmt.Fprintf(stderr, "GPU: %v\n", b.Adapter())
		return b, b.Close, nil
	}
	return nil, nil, usageError{fmt.Sprintf("-backend %q: want cpu, cpu-ref or webgpu", name)}
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
		return nil, fmt.Errorf("%s + %s: %w", varPath, vaePath, headsHint(err))
	}
	return p, nil
}

func writePNG(path string, x core.HostTensor, b int) error {
	img, err := core.ToImage(x, b)
	if err != nil {
		return err
	}
	return savePNG(path, img)
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	return generateWithHook(args, stdout, stderr, nil)
}

// generateWithHook is runGenerate with a hook (nil: none) called with the run's backend once the model is
// loaded (step -1) and after each step (its index): where a test (generate_faults_test.go) injects a
// fault, such as a lost device, at the moment a real one could strike.
func generateWithHook(args []string, stdout, stderr io.Writer, generateHook func(b core.Backend, step int)) error {
	f, err := parseGenerate(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	b, closeBackend, err := newBackend(f.backend, f.threads, stderr)
	if err != nil {
		return err
	}
	defer closeBackend()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if f.model.isDefault() {
		fmt.Fprintf(stderr, "no -weights or -var/-vae: using the %s\n", "embedded default model "+fashionvar.Name+" (Fashion-MNIST, 32x32)")
	} else if f.model.demo != "" {
		fmt.Fprintf(stderr, "using the embedded demo model %s\n", f.model.demo)
	}
	g, info, err := f.model.openGeneratorPrinting(ctx, b, stderr)
	if err != nil {
		return err
	}
	gi := g.Info()
	settings, err := f.settings(g)
	if err != nil {
		return err
	}
	h, w, err := g.ImageSize(settings)
	if err != nil {
		return usageError{err.Error()}
	}
	fmt.Fprintf(stderr, "%s; this run: %dx%d images, backend %s\n", gi.Summary, w, h, b.Name())
	fmt.Fprintf(stderr, "sampling: %s\n", describeSettings(g, settings))
	if n, ok := g.(gen.Noter); ok {
		for _, note := range n.Notes(settings) {
			fmt.Fprintln(stderr, note)
		}
	}
	if f.classes != "" || f.seeds != "" {
		return generateGrid(ctx, g, f, settings, info, stdout, stderr)
	}
	if f.class < 0 || f.class >= gi.Classes {
		return usageError{fmt.Sprintf("-class %d: this model has classes 0..%d", f.class, gi.Classes-1)}
	}
	if f.scales != "" {
		if err := os.MkdirAll(f.scales, 0o755); err != nil {
			return err
		}
	}
	req := gen.Request{Labels: []int{f.class}, Seed: f.seed, Settings: settings, Previews: f.scales != ""}
	var gridH, gridW int
	if generateHook != nil {
		generateHook(b, -1)
	}
	res, err := g.Generate(ctx, req, func(st gen.Step) error {
		if generateHook != nil {
			defer generateHook(b, st.Index)
		}
		gridH, gridW = st.GridH, st.GridW
		fmt.Fprintf(stderr, "%s %.2fs\n", st.Label, st.Elapsed.Seconds())
		if f.scales != "" && st.Preview != nil {
			name := filepath.Join(f.scales, fmt.Sprintf("%s_%02d_%dx%d.png", gi.StepNoun, st.Index, st.GridW, st.GridH))
			return writePNG(name, *st.Preview, 0)
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
		if err := writeTokens(f.tokens, gi.Family, res, gridH, gridW); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", f.tokens)
	}
	return nil
}

// writeTokens writes image 0's tokens as JSON: {"tokens": [[step 0 ids], ...]} (row-major per step),
// for MAR {"latents": [[token 0's values], ...]} (raster order), for RQ {"codes": [[[d0, d1, ...] per
// column] per row]} (H x W x D; one step per position).
func writeTokens(path, family string, res *gen.Result, gridH, gridW int) error {
	var v any = map[string][][]int{"tokens": res.Tokens}
	if rows := res.LatentRows(); rows != nil {
		v = map[string][][]float32{"latents": rows}
	}
	if family == "rq" {
		codes := make([][][]int, gridH)
		for r := range codes {
			codes[r] = make([][]int, gridW)
			for c := range codes[r] {
				if i := r*gridW + c; i < len(res.Tokens) {
					codes[r][c] = res.Tokens[i]
				}
			}
		}
		v = map[string][][][]int{"codes": codes}
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// settings are the generation settings the flags ask for: the flags the user gave, by the family's
// setting names; the rest are the model's defaults. A flag the family does not take is an error.
func (f *generateFlags) settings(g gen.Generator) (gen.Settings, error) {
	given := givenSettings(g, &f.sampling, &f.flex, f.model.patchNums)
	if f.scales != "" && g.Info().Family == "var" {
		given["previews"] = f.preview.String()
	}
	return resolveSettings(g, given)
}

// givenSettings are the settings the user's flags set, by the family's setting names (FlexVAR's schedule
// is -patch-nums).
func givenSettings(g gen.Generator, sampling *samplingFlags, flex *flexFlags, patchNums string) gen.Settings {
	given := sampling.given()
	for k, v := range flex.given() {
		given[k] = v
	}
	if patchNums != "" && g.Info().Family == "flexvar" {
		given["schedule"] = patchNums
	}
	return given
}

// resolveSettings checks the given settings against the family's and fills in the model's defaults. A
// flag the family does not take is an error naming it.
func resolveSettings(g gen.Generator, given gen.Settings) (gen.Settings, error) {
	declared := map[string]bool{}
	for _, d := range g.Settings() {
		declared[d.Name] = true
	}
	for k := range given {
		if !declared[k] {
			return nil, usageError{fmt.Sprintf("-%s: a %s model does not take it", k, g.Info().Family)}
		}
	}
	s, err := gen.Values(g.Settings(), given)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return s, nil
}

// describeSettings lists resolved settings in declaration order: "cfg 3, top-k 100, ...".
func describeSettings(g gen.Generator, s gen.Settings) string {
	var parts []string
	for _, d := range g.Settings() {
		if v, ok := s[d.Name]; ok { // a partial set (convert -verify's) names only what it sets
			parts = append(parts, d.Name+" "+v)
		}
	}
	return strings.Join(parts, ", ")
}

// generateGrid writes one image per (class, seed): a PNG grid with a row per class and a column per seed,
// and with -samples each image on its own. Every cell is the request -class C -seed S makes, so any cell
// can be reproduced alone.
func generateGrid(ctx context.Context, g gen.Generator, f *generateFlags, settings gen.Settings, info modelInfo, stdout, stderr io.Writer) error {
	classCount := g.Info().Classes
	spec := f.classes
	if spec == "" {
		spec = "all"
	}
	classes, err := parseRange(spec, classCount)
	if err != nil {
		return usageError{"-classes: " + err.Error()}
	}
	for _, cl := range classes {
		if cl >= classCount {
			return usageError{fmt.Sprintf("-classes: class %d: this model has classes 0..%d", cl, classCount-1)}
		}
	}
	spec = f.seeds
	if spec == "" {
		spec = "0-7"
	}
	seedInts, err := parseRange(spec, 0)
	if err != nil {
		return usageError{"-seeds: " + err.Error()}
	}
	if f.samples != "" {
		if err := os.MkdirAll(f.samples, 0o755); err != nil {
			return err
		}
	}
	cells := make([][]image.Image, len(classes))
	start := time.Now()
	for i, cl := range classes {
		for _, seed := range seedInts {
			res, err := g.Generate(ctx, gen.Request{Labels: []int{cl}, Seed: uint64(seed), Settings: settings}, nil)
			if err != nil {
				return fmt.Errorf("class %d seed %d: %w", cl, seed, err)
			}
			img, err := core.ToImage(res.Images, 0)
			if err != nil {
				return err
			}
			cells[i] = append(cells[i], img)
			if f.samples != "" {
				if err := savePNG(filepath.Join(f.samples, fmt.Sprintf("class%d_seed%d.png", cl, seed)), img); err != nil {
					return err
				}
			}
		}
		name := ""
		if cl < len(info.ClassNames) {
			name = " (" + info.ClassNames[cl] + ")"
		}
		fmt.Fprintf(stderr, "class %d%s: %d images, %.1fs so far\n", cl, name, len(seedInts), time.Since(start).Seconds())
	}
	if err := savePNG(f.out, gridImage(cells)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d classes x %d seeds)\n", f.out, len(classes), len(seedInts))
	return nil
}

// gridImage lays cells out in rows with a 2-pixel gap, each cell enlarged by an integer factor (nearest)
// so that small images stay visible: at least 64 pixels a side.
func gridImage(cells [][]image.Image) image.Image {
	cw, ch := cells[0][0].Bounds().Dx(), cells[0][0].Bounds().Dy()
	zoom := max(1, 64/min(cw, ch))
	const gap = 2
	cellW, cellH := cw*zoom+gap, ch*zoom+gap
	out := image.NewRGBA(image.Rect(0, 0, len(cells[0])*cellW+gap, len(cells)*cellH+gap))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.RGBA{40, 40, 40, 255}), image.Point{}, draw.Src)
	for r, row := range cells {
		for k, img := range row {
			b := img.Bounds()
			for y := 0; y < ch*zoom; y++ {
				for x := 0; x < cw*zoom; x++ {
					out.Set(gap+k*cellW+x, gap+r*cellH+y, img.At(b.Min.X+x/zoom, b.Min.Y+y/zoom))
				}
			}
		}
	}
	return out
}

func savePNG(path string, img image.Image) error {
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
