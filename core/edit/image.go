package edit

import (
	"fmt"
	"image"

	xdraw "golang.org/x/image/draw"

	"github.com/webvar/webvar/core"
)

// ToInput is img's first w x h pixels as the official notebooks read an image: RGB bytes / 255, then
// x + x - 1, in [-1, 1], as [1, 3, h, w].
func ToInput(img image.Image, h, w int) core.HostTensor {
	out := core.HostTensor{Shape: core.Shape{1, 3, h, w}, Data: make([]float32, 3*h*w)}
	b := img.Bounds()
	for y := range h {
		for x := range w {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA() // 16-bit, alpha-premultiplied
			for c, v := range []uint32{r, g, bl} {
				t := float32(v>>8) / 255
				out.Data[c*h*w+y*w+x] = t + t - 1
			}
		}
	}
	return out
}

// Fit is src as a model's w x h input: unchanged when it has that size, else its largest centred w:h
// rectangle resized (bilinear). crop is the part of src used (src's bounds when unchanged).
func Fit(src image.Image, h, w int) (in core.HostTensor, crop image.Rectangle) {
	bnd := src.Bounds()
	if bnd.Dx() == w && bnd.Dy() == h {
		return ToInput(src, h, w), bnd
	}
	cw, ch := bnd.Dx(), bnd.Dx()*h/w
	if ch > bnd.Dy() {
		cw, ch = bnd.Dy()*w/h, bnd.Dy()
	}
	crop = image.Rect(bnd.Min.X+(bnd.Dx()-cw)/2, bnd.Min.Y+(bnd.Dy()-ch)/2, 0, 0)
	crop.Max = crop.Min.Add(image.Pt(cw, ch))
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	xdraw.BiLinear.Scale(dst, dst.Bounds(), src, crop, xdraw.Src, nil)
	return ToInput(dst, h, w), crop
}

// Place fits all of src inside a w x h canvas (scaled to fit, aspect kept, centred, mid-grey around it)
// for expansion, and returns the canvas with its keep-mask on the gh x gw token grid: 1 for the tokens
// that lie wholly on the image. at is where the image went.
func Place(src image.Image, h, w, gh, gw int) (in core.HostTensor, mask []float32, at image.Rectangle) {
	bnd := src.Bounds()
	pw, ph := w, max(1, bnd.Dy()*w/max(1, bnd.Dx()))
	if ph > h {
		pw, ph = max(1, bnd.Dx()*h/max(1, bnd.Dy())), h
	}
	at = image.Rect((w-pw)/2, (h-ph)/2, (w-pw)/2+pw, (h-ph)/2+ph)
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(dst.Pix); i += 4 {
		dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = 128, 128, 128, 255
	}
	xdraw.BiLinear.Scale(dst, at, src, bnd, xdraw.Src, nil)
	mask = make([]float32, gh*gw)
	th, tw := h/gh, w/gw // pixels per token
	for r := range gh {
		for c := range gw {
			if image.Rect(c*tw, r*th, (c+1)*tw, (r+1)*th).In(at) {
				mask[r*gw+c] = 1
			}
		}
	}
	return ToInput(dst, h, w), mask, at
}

// MaskOf reads a mask image (white = regenerate, black = keep) as a keep-mask on the gh x gw grid: 1 - the
// mean brightness of the pixels each grid cell covers.
func MaskOf(img image.Image, gh, gw int) ([]float32, error) {
	b := img.Bounds()
	if b.Dx() < gw || b.Dy() < gh {
		return nil, fmt.Errorf("mask of %dx%d pixels: want at least %dx%d", b.Dx(), b.Dy(), gw, gh)
	}
	mask := make([]float32, gh*gw)
	for gy := range gh {
		for gx := range gw {
			y0, y1 := b.Min.Y+gy*b.Dy()/gh, b.Min.Y+(gy+1)*b.Dy()/gh
			x0, x1 := b.Min.X+gx*b.Dx()/gw, b.Min.X+(gx+1)*b.Dx()/gw
			var sum float64
			for y := y0; y < y1; y++ {
				for x := x0; x < x1; x++ {
					r, g, bl, _ := img.At(x, y).RGBA()
					sum += float64(r+g+bl) / (3 * 65535)
				}
			}
			mask[gy*gw+gx] = float32(1 - sum/float64((y1-y0)*(x1-x0)))
		}
	}
	return mask, nil
}

// RowsMask keeps the first rows of a gh x gw grid (the RQ-Transformer's raster-order completion).
func RowsMask(gh, gw, rows int) []float32 {
	m := make([]float32, gh*gw)
	for i := range min(rows, gh) * gw {
		m[i] = 1
	}
	return m
}

// Strip is a before / mask / after picture of an edit: the input (in, [1, 3, h, w] in [-1, 1]), the input
// with the regenerated tokens of keep (gh x gw, 1 = kept) tinted magenta, and the result (out, image 0 of
// [B, 3, h, w] in [0, 1]), side by side with a white gap, each pixel a scale x scale block.
func Strip(in core.HostTensor, keep []float32, gh, gw int, out core.HostTensor, scale int) (*image.NRGBA, error) {
	if len(in.Shape) != 4 || len(out.Shape) != 4 || in.Shape[2] != out.Shape[2] || in.Shape[3] != out.Shape[3] || len(keep) != gh*gw || scale < 1 {
		return nil, fmt.Errorf("strip: input %v, output %v, a %dx%d mask of %d values and scale %d do not match", in.Shape, out.Shape, gh, gw, len(keep), scale)
	}
	h, w := in.Shape[2], in.Shape[3]
	gap := 4 * scale
	dst := image.NewNRGBA(image.Rect(0, 0, scale*3*w+2*gap, scale*h))
	for i := range dst.Pix {
		dst.Pix[i] = 255
	}
	to8 := func(v float32) uint8 { return uint8(min(max(v, 0), 1)*255 + 0.5) }
	set := func(panel, x, y, c int, v float32) {
		x0 := panel*(scale*w+gap) + scale*x
		for dy := range scale {
			for dx := range scale {
				dst.Pix[dst.PixOffset(x0+dx, scale*y+dy)+c] = to8(v)
			}
		}
	}
	for y := range h {
		for x := range w {
			regen := keep[(y*gh/h)*gw+x*gw/w] <= 0.5
			for c := range 3 {
				v := (in.Data[(c*h+y)*w+x] + 1) / 2
				set(0, x, y, c, v)
				if regen {
					v = 0.45*v + 0.55*[3]float32{1, 0, 1}[c]
				}
				set(1, x, y, c, v)
				set(2, x, y, c, out.Data[(c*h+y)*w+x])
			}
		}
	}
	return dst, nil
}
