package main

import (
	"context"
	"encoding/json"
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

	xdraw "golang.org/x/image/draw"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/varmodel"
)

// webvar edit: zero-shot in-painting, out-painting and class-conditional editing of an image with a VAR
// model, as FoundationVision/VAR's demo_zero_shot_edit.ipynb does it (core/varmodel/edit.go).

type editFlags struct {
	model    modelFlags
	sampling samplingFlags
	class    int
	seed     uint64
	backend  string
	threads  int
	image    string
	box      string
	outpaint bool
	mask     string
	out      string
	tokens   string
}

func parseEdit(args []string, stderr io.Writer) (*editFlags, error) {
	f := &editFlags{}
	fs := flag.NewFlagSet("edit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.model.register(fs)
	f.sampling.register(fs)
	fs.IntVar(&f.class, "class", 0, "class to edit towards; the class count (e.g. 1000 for ImageNet) is the null class: plain in-painting")
	fs.Uint64Var(&f.seed, "seed", 0, "random seed")
	fs.StringVar(&f.backend, "backend", "cpu", "compute backend: cpu, webgpu, or cpu-ref")
	fs.IntVar(&f.threads, "threads", 0, "CPU backend threads (0: all cores)")
	fs.StringVar(&f.image, "image", "", "the input image (PNG); resized and centre-cropped to the model's size when it differs")
	fs.StringVar(&f.box, "box", "", "y0,x0,y1,x1: the box, in fractions of the image (the notebook's get_edit_mask, Python rounding), that is regenerated (kept with -outpaint)")
	fs.BoolVar(&f.outpaint, "outpaint", false, "keep the box and regenerate the rest (out-painting)")
	fs.StringVar(&f.mask, "mask", "", "instead of -box: a mask PNG, white = regenerate, black = keep (any size: averaged onto the last scale's grid)")
	fs.StringVar(&f.out, "out", "", "output PNG path")
	fs.StringVar(&f.tokens, "tokens", "", "also write the final tokens as JSON {\"tokens\": [[scale 0 ids], ...]}")
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
	if err := f.sampling.parsed(fs); err != nil {
		return nil, err
	}
	switch {
	case f.image == "":
		return nil, usageError{"-image is required (the PNG to edit)"}
	case f.out == "":
		return nil, usageError{"-out is required"}
	case (f.box == "") == (f.mask == ""):
		return nil, usageError{"give either -box y0,x0,y1,x1 or -mask mask.png"}
	case f.mask != "" && f.outpaint:
		return nil, usageError{"-outpaint goes with -box (a mask says itself what to regenerate)"}
	case f.class < 0:
		return nil, usageError{"-class must be >= 0"}
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
	p, info, err := f.model.openPrinting(ctx, b, stderr)
	if err != nil {
		return err
	}
	f.sampling.apply(info.Sampling)
	c := p.VAR.Config()
	if f.class > c.Classes {
		return usageError{fmt.Sprintf("-class %d: this model has classes 0..%d, and %d for the null class", f.class, c.Classes-1, c.Classes)}
	}
	side := p.VAE.ImageSize()
	img, note, err := readEditImage(f.image, side)
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(stderr, note)
	}
	last := c.PatchNums[len(c.PatchNums)-1]
	var mask []float32
	if f.box != "" {
		box, _ := parseBox(f.box)
		mask = varmodel.BoxMask(last, box, !f.outpaint)
	} else if mask, err = readMaskPNG(f.mask, last); err != nil {
		return err
	}
	kept := 0
	for _, v := range mask {
		if v > 0.5 {
			kept++
		}
	}
	switch {
	case f.box != "" && (f.outpaint && kept == 0 || !f.outpaint && kept == len(mask)):
		return usageError{fmt.Sprintf("-box %s covers no token of the %dx%d grid (Python rounding of the fractions times %d)", f.box, last, last, last)}
	case kept == len(mask):
		return usageError{"the mask keeps the whole image: nothing to regenerate"}
	}
	o := core.NewOps(b)
	e, err := p.EditOf(o, img, mask)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("class %d", f.class)
	if f.class == c.Classes {
		what = "the null class (in-painting)"
	}
	fmt.Fprintf(stderr, "editing towards %s: %d of %d positions of the last scale kept; cfg %g, top-k %d, top-p %g\n",
		what, kept, len(mask), f.sampling.cfg, f.sampling.topK, f.sampling.topP)
	req := varmodel.Request{Labels: []int{f.class}, CFG: f.sampling.cfg, TopK: f.sampling.topK, TopP: f.sampling.topP,
		MoreSmooth: f.sampling.moreSmooth, Seed: f.seed, Edit: e}
	res, err := p.Generate(ctx, b, req, nil)
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

// maxEditPixels bounds the input image: larger files are refused before decoding their pixels.
const maxEditPixels = 64 << 20

// readEditImage loads a PNG as the notebook does (RGB bytes / 255, then x + x - 1, in [-1, 1]) into
// [1, 3, side, side]. An image of another size is centre-cropped to a square and resized (bilinear);
// note says so.
func readEditImage(path string, side int) (core.HostTensor, string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return core.HostTensor{}, "", err
	}
	defer fh.Close()
	cfg, err := png.DecodeConfig(fh)
	if err != nil {
		return core.HostTensor{}, "", fmt.Errorf("%s: not a readable PNG: %w", path, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > maxEditPixels {
		return core.HostTensor{}, "", fmt.Errorf("%s: %dx%d pixels: want an image of at most %d pixels", path, cfg.Width, cfg.Height, maxEditPixels)
	}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return core.HostTensor{}, "", err
	}
	src, err := png.Decode(fh)
	if err != nil {
		return core.HostTensor{}, "", fmt.Errorf("%s: %w", path, err)
	}
	note := ""
	bnd := src.Bounds()
	if bnd.Dx() != side || bnd.Dy() != side {
		s := min(bnd.Dx(), bnd.Dy())
		crop := image.Rect(bnd.Min.X+(bnd.Dx()-s)/2, bnd.Min.Y+(bnd.Dy()-s)/2, 0, 0)
		crop.Max = crop.Min.Add(image.Pt(s, s))
		dst := image.NewNRGBA(image.Rect(0, 0, side, side))
		xdraw.BiLinear.Scale(dst, dst.Bounds(), src, crop, xdraw.Src, nil)
		src = dst
		note = fmt.Sprintf("%s is %dx%d: centre-cropped to %dx%d and resized to the model's %dx%d", path, bnd.Dx(), bnd.Dy(), s, s, side, side)
	}
	out := core.HostTensor{Shape: core.Shape{1, 3, side, side}, Data: make([]float32, 3*side*side)}
	b := src.Bounds()
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			r, g, bl, _ := src.At(b.Min.X+x, b.Min.Y+y).RGBA() // 16-bit, alpha-premultiplied
			for c, v := range []uint32{r, g, bl} {
				t := float32(v>>8) / 255
				out.Data[c*side*side+y*side+x] = t + t - 1
			}
		}
	}
	return out, note, nil
}

// readMaskPNG reads a mask PNG (white = regenerate) as a keep-mask on the p x p grid: 1 - the mean
// brightness of the pixels each grid cell covers.
func readMaskPNG(path string, p int) ([]float32, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	cfg, err := png.DecodeConfig(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable PNG: %w", path, err)
	}
	if cfg.Width < p || cfg.Height < p || cfg.Width*cfg.Height > maxEditPixels {
		return nil, fmt.Errorf("%s: %dx%d pixels: want at least %dx%d and at most %d pixels", path, cfg.Width, cfg.Height, p, p, maxEditPixels)
	}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	img, err := png.Decode(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := img.Bounds()
	mask := make([]float32, p*p)
	for gy := 0; gy < p; gy++ {
		for gx := 0; gx < p; gx++ {
			y0, y1 := b.Min.Y+gy*b.Dy()/p, b.Min.Y+(gy+1)*b.Dy()/p
			x0, x1 := b.Min.X+gx*b.Dx()/p, b.Min.X+(gx+1)*b.Dx()/p
			var sum float64
			for y := y0; y < y1; y++ {
				for x := x0; x < x1; x++ {
					r, g, bl, _ := img.At(x, y).RGBA()
					sum += float64(r+g+bl) / (3 * 65535)
				}
			}
			mask[gy*p+gx] = float32(1 - sum/float64((y1-y0)*(x1-x0)))
		}
	}
	return mask, nil
}
