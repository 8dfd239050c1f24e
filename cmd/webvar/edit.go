package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/edit"
	"github.com/webvar/webvar/core/gen"
)

// webvar edit: image editing through the family's gen.Editor. VAR: zero-shot in-painting, out-painting
// and class-conditional editing as FoundationVision/VAR's demo_zero_shot_edit.ipynb does it
// (core/varmodel/edit.go); FlexVAR: image-to-image by teacher-forcing the kept region at every step
// (refinement, in/out-painting, expansion to a larger canvas or another aspect; core/flexvar EditOf);
// RQ-Transformer: image completion, the input's codes of the first rows kept (core/rq).

type editFlags struct {
	model    modelFlags
	sampling samplingFlags
	flex     flexFlags
	class    int
	seed     uint64
	backend  string
	threads  int
	image    string
	box      string
	outpaint bool
	mask     string
	refine   int
	keepRows int
	expand   bool
	out      string
	tokens   string
	strip    string
}

func parseEdit(args []string, stderr io.Writer) (*editFlags, error) {
	f := &editFlags{}
	fs := flag.NewFlagSet("edit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.model.register(fs)
	f.sampling.register(fs)
	f.flex.register(fs)
	fs.IntVar(&f.class, "class", 0, "class to edit towards; the class count (e.g. 1000 for ImageNet) is the null class: plain in-painting")
	fs.Uint64Var(&f.seed, "seed", 0, "random seed")
	fs.StringVar(&f.backend, "backend", "cpu", "compute backend: cpu, webgpu, or cpu-ref")
	fs.IntVar(&f.threads, "threads", 0, "CPU backend threads (0: all cores)")
	fs.StringVar(&f.image, "image", "", "the input image (PNG); centre-cropped to the output's aspect and resized to its size when it differs")
	fs.StringVar(&f.box, "box", "", "y0,x0,y1,x1: the box, in fractions of the image (the notebook's get_edit_mask, Python rounding), that is regenerated (kept with -outpaint)")
	fs.BoolVar(&f.outpaint, "outpaint", false, "keep the box and regenerate the rest (out-painting)")
	fs.StringVar(&f.mask, "mask", "", "instead of -box: a mask PNG, white = regenerate, black = keep (any size: averaged onto the last step's grid)")
	fs.IntVar(&f.refine, "refine", 0, "keep the first N steps (scales) of the image whole and generate the rest anew (refinement; alone or with -box/-mask)")
	fs.IntVar(&f.keepRows, "keep-rows", 0, "RQ-Transformer: image completion: keep the input's codes of the first R rows of the code map and generate the rest")
	fs.BoolVar(&f.expand, "expand", false, "FlexVAR: fit the whole image inside the output (its size and aspect from -patch-nums and -aspect), keep it and generate the margins (expansion)")
	fs.StringVar(&f.out, "out", "", "output PNG path")
	fs.StringVar(&f.strip, "strip", "", "also write a before / mask / after PNG: the input as the model sees it, the regenerated tokens tinted, the result (small images enlarged to 128 pixels)")
	fs.StringVar(&f.tokens, "tokens", "", "also write the final tokens as JSON {\"tokens\": [[scale 0 ids], ...]}")
	if err := parseModelFlagSet(fs, args, &f.model, &f.sampling, &f.flex); err != nil {
		return nil, err
	}
	masks := 0
	for _, given := range []bool{f.box != "", f.mask != "", f.expand} {
		if given {
			masks++
		}
	}
	switch {
	case f.image == "":
		return nil, usageError{"-image is required (the PNG to edit)"}
	case f.out == "":
		return nil, usageError{"-out is required"}
	case masks > 1:
		return nil, usageError{"give one of -box, -mask and -expand"}
	case masks == 0 && f.refine == 0 && f.keepRows == 0:
		return nil, usageError{"give either -box y0,x0,y1,x1, -mask mask.png, -expand, -refine N or (RQ) -keep-rows R"}
	case f.keepRows < 0:
		return nil, usageError{"-keep-rows must be >= 0"}
	case f.keepRows > 0 && (masks > 0 || f.refine > 0):
		return nil, usageError{"-keep-rows (RQ image completion) goes alone"}
	case f.mask != "" && f.outpaint:
		return nil, usageError{"-outpaint goes with -box (a mask says itself what to regenerate)"}
	case f.outpaint && f.box == "":
		return nil, usageError{"-outpaint goes with -box"}
	case f.class < 0:
		return nil, usageError{"-class must be >= 0"}
	case f.refine < 0:
		return nil, usageError{"-refine must be >= 0"}
	}
	if f.box != "" {
		if _, err := parseBox(f.box); err != nil {
			return nil, usageError{"-box: " + err.Error()}
		}
	}
	return f, nil
}

// parseBox reads y0,x0,y1,x1 in [0, 1] with y0 < y1 and x0 < x1.
func parseBox(s string) ([4]float64, error) {
	var b [4]float64
	parts := strings.Split(s, ",")
	if len(parts) != 4 {
		return b, fmt.Errorf("%q: want y0,x0,y1,x1", s)
	}
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v > 1 {
			return b, fmt.Errorf("%q: each of y0,x0,y1,x1 must be a fraction in [0, 1]", s)
		}
		b[i] = v
	}
	if b[0] >= b[2] || b[1] >= b[3] {
		return b, fmt.Errorf("%q: want y0 < y1 and x0 < x1", s)
	}
	return b, nil
}

func runEdit(args []string, stdout, stderr io.Writer) error {
	f, err := parseEdit(args, stderr)
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
	g, _, err := f.model.openGeneratorPrinting(ctx, b, stderr)
	if err != nil {
		return err
	}
	ed, ok := g.(gen.Editor)
	info := g.Info()
	if !ok {
		return fmt.Errorf("a %s model does not edit images (VAR, FlexVAR and the RQ-Transformer do)", info.Family)
	}
	if (f.keepRows > 0) != (info.Family == "rq") {
		if f.keepRows > 0 {
			return usageError{fmt.Sprintf("-keep-rows is the RQ-Transformer's image completion; this is a %s model", info.Family)}
		}
		return usageError{"an RQ-Transformer completes images in raster order: give -keep-rows R"}
	}
	if f.expand && info.Family != "flexvar" {
		return usageError{fmt.Sprintf("-expand is FlexVAR's (any size and aspect); this is a %s model", info.Family)}
	}
	settings, err := resolveSettings(g, givenSettings(g, &f.sampling, &f.flex, f.model.patchNums))
	if err != nil {
		return err
	}
	if f.class > info.Classes {
		return usageError{fmt.Sprintf("-class %d: this model has classes 0..%d, and %d for the null class", f.class, info.Classes-1, info.Classes)}
	}
	gh, gw, err := ed.EditGrid(settings)
	if err != nil {
		return usageError{err.Error()}
	}
	h, w, err := g.ImageSize(settings)
	if err != nil {
		return usageError{err.Error()}
	}
	var img core.HostTensor
	var mask []float32
	var note string
	if f.expand {
		img, mask, note, err = readExpandImage(f.image, h, w, gh, gw)
	} else {
		img, note, err = readEditImage(f.image, h, w)
	}
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(stderr, note)
	}
	switch {
	case f.box != "":
		box, _ := parseBox(f.box)
		mask = edit.BoxMask(gh, gw, box, !f.outpaint)
	case f.mask != "":
		if mask, err = readMaskPNG(f.mask, gh, gw); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%s averaged onto the %dx%d grid of the last %s\n", f.mask, gh, gw, info.StepNoun)
	case mask == nil: // -refine or -keep-rows alone: the later steps are all generated
		if f.keepRows > gh {
			return usageError{fmt.Sprintf("-keep-rows %d: the code map has %d rows", f.keepRows, gh)}
		}
		mask = edit.RowsMask(gh, gw, f.keepRows)
	}
	kept := 0
	for _, v := range mask {
		if v > 0.5 {
			kept++
		}
	}
	switch {
	case f.box != "" && (f.outpaint && kept == 0 || !f.outpaint && kept == len(mask)):
		return usageError{fmt.Sprintf("-box %s covers no token of the %dx%d grid (Python rounding of the fractions times %d and %d)", f.box, gh, gw, gh, gw)}
	case kept == len(mask):
		return usageError{"the mask keeps the whole image: nothing to regenerate"}
	case f.expand && kept == 0:
		return usageError{fmt.Sprintf("-expand: the image covers no whole token of the %dx%d output grid", gh, gw)}
	}
	what := fmt.Sprintf("class %d", f.class)
	if f.class == info.Classes {
		what = "the null class (in-painting)"
	}
	refine := ""
	if f.refine > 0 {
		refine = fmt.Sprintf("; the first %d %ss kept whole", f.refine, info.StepNoun)
	}
	fmt.Fprintf(stderr, "editing towards %s: %d of the %dx%d positions of the last %s's grid kept%s; %s\n",
		what, kept, gh, gw, info.StepNoun, refine, describeSettings(g, settings))
	res, err := ed.Edit(ctx, gen.EditRequest{Request: gen.Request{Labels: []int{f.class}, Seed: f.seed, Settings: settings},
		Image: img, Keep: mask, KeepSteps: f.refine}, nil)
	if err != nil {
		return err
	}
	if err := writePNG(f.out, res.Images, 0); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", f.out)
	if f.strip != "" {
		strip, err := edit.Strip(img, mask, gh, gw, res.Images, max(1, 128/max(h, w)))
		if err != nil {
			return err
		}
		if err := savePNG(f.strip, strip); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", f.strip)
	}
	if f.tokens != "" {
		if err := writeTokens(f.tokens, info.Family, res, gh, gw); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", f.tokens)
	}
	return nil
}

// maxEditPixels bounds the input image: larger files are refused before decoding their pixels.
const maxEditPixels = 64 << 20

// decodePNG reads a PNG, refusing files of more than maxEditPixels pixels before decoding them.
func decodePNG(path string) (image.Image, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	cfg, err := png.DecodeConfig(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable PNG: %w", path, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > maxEditPixels {
		return nil, fmt.Errorf("%s: %dx%d pixels: want an image of at most %d pixels", path, cfg.Width, cfg.Height, maxEditPixels)
	}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	img, err := png.Decode(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// readEditImage loads a PNG as [1, 3, h, w] in [-1, 1]. An image of another size is centre-cropped to
// the w:h aspect and resized (bilinear, edit.Fit); note says so.
func readEditImage(path string, h, w int) (core.HostTensor, string, error) {
	src, err := decodePNG(path)
	if err != nil {
		return core.HostTensor{}, "", err
	}
	in, crop := edit.Fit(src, h, w)
	note := ""
	if bnd := src.Bounds(); bnd.Dx() != w || bnd.Dy() != h {
		note = fmt.Sprintf("%s is %dx%d: centre-cropped to %dx%d and resized to the output's %dx%d", path, bnd.Dx(), bnd.Dy(), crop.Dx(), crop.Dy(), w, h)
	}
	return in, note, nil
}

// readExpandImage fits a PNG inside a w x h canvas with its keep-mask on the gh x gw grid (edit.Place).
func readExpandImage(path string, h, w, gh, gw int) (core.HostTensor, []float32, string, error) {
	src, err := decodePNG(path)
	if err != nil {
		return core.HostTensor{}, nil, "", err
	}
	in, mask, at := edit.Place(src, h, w, gh, gw)
	bnd := src.Bounds()
	return in, mask, fmt.Sprintf("%s (%dx%d) placed at %v of the %dx%d output; the rest is generated", path, bnd.Dx(), bnd.Dy(), at, w, h), nil
}

// readMaskPNG reads a mask PNG (white = regenerate) as a keep-mask on the gh x gw grid (edit.MaskOf).
func readMaskPNG(path string, gh, gw int) ([]float32, error) {
	img, err := decodePNG(path)
	if err != nil {
		return nil, err
	}
	m, err := edit.MaskOf(img, gh, gw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
