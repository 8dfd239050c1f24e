// Package edit holds what every family's image editing shares: keep-masks on a token grid (a box with the
// official notebook's rounding, or any mask), their resizing to each step's grid with the rule of
// FoundationVision/VAR's demo_zero_shot_edit.ipynb, and the swap of kept tokens for an input image's.
package edit

import (
	"fmt"
	"math"
)

// Edit is what a generation keeps of an input image: per step, the image's own token ids (row-major
// on that step's grid) and where they are kept. Each family's sampler calls Apply after sampling a step.
type Edit struct {
	Tokens [][]int
	Keep   [][]bool
}

// Check reports an edit that does not fit steps of the given token counts.
func (e *Edit) Check(sizes []int) error {
	if len(e.Tokens) != len(sizes) || len(e.Keep) != len(sizes) {
		return fmt.Errorf("edit has %d steps of tokens and %d of masks, the generation %d", len(e.Tokens), len(e.Keep), len(sizes))
	}
	for si, n := range sizes {
		if len(e.Tokens[si]) != n || len(e.Keep[si]) != n {
			return fmt.Errorf("edit step %d: %d tokens and %d mask values, want %d", si, len(e.Tokens[si]), len(e.Keep[si]), n)
		}
	}
	return nil
}

// Apply swaps the kept positions of step si's ids (B images of n tokens each) for the input's.
func (e *Edit) Apply(si int, ids []int) {
	n := len(e.Keep[si])
	for b := 0; b+n <= len(ids); b += n {
		for j, k := range e.Keep[si] {
			if k {
				ids[b+j] = e.Tokens[si][j]
			}
		}
	}
}

// BoxMask is the notebook's get_edit_mask on an h x w grid: the box (fractions of the image, y0, x0, y1,
// x1) covers rows round(y0*h) to round(y1*h) and columns round(x0*w) to round(x1*w) (Python's round:
// half to even). With inpaint the box is regenerated and the rest kept (mask 0 inside, 1 outside);
// without (out-painting) the box is kept and the rest regenerated. 1 = keep.
func BoxMask(h, w int, box [4]float64, inpaint bool) []float32 {
	r0, c0 := int(math.RoundToEven(box[0]*float64(h))), int(math.RoundToEven(box[1]*float64(w)))
	r1, c1 := int(math.RoundToEven(box[2]*float64(h))), int(math.RoundToEven(box[3]*float64(w)))
	m := make([]float32, h*w)
	for r := max(r0, 0); r < min(r1, h); r++ {
		for c := max(c0, 0); c < min(c1, w); c++ {
			m[r*w+c] = 1
		}
	}
	if inpaint {
		for i := range m {
			m[i] = 1 - m[i]
		}
	}
	return m
}

// KeepMasks resizes a keep-mask on the last step's h x w grid to every step's grid (each [2]int is
// rows, columns): F.interpolate(mode='bilinear', align_corners=False) > 0.5, and every position kept on
// grids of at most 3 tokens (the notebook's rule).
func KeepMasks(mask []float32, h, w int, grids [][2]int) ([][]bool, error) {
	if len(mask) != h*w {
		return nil, fmt.Errorf("edit mask has %d values, want %d x %d", len(mask), h, w)
	}
	out := make([][]bool, len(grids))
	for si, g := range grids {
		keep := make([]bool, g[0]*g[1])
		if g[0]*g[1] <= 3 {
			for i := range keep {
				keep[i] = true
			}
		} else {
			for i, v := range ResizeBilinear(mask, h, w, g[0], g[1]) {
				keep[i] = v > 0.5
			}
		}
		out[si] = keep
	}
	return out, nil
}

// ResizeBilinear is F.interpolate(x[None, None], size=(outH, outW), mode='bilinear',
// align_corners=False) of an inH x inW plane: source coordinate (i + 0.5) * in/out - 0.5, clamped at 0,
// linear between the two neighbours. The rounding is PyTorch's CPU kernel's, which decides masks that land
// on 0.5 exactly: the scale in/out in float32, the coordinate in float64 (the index + 0.5 is a double
// there), the weight rounded to float32 and the blend in float32. (With the coordinate in float32, the
// var-tiny edit golden's off-centre box gives a weight of exactly 0.5 and loses one kept position;
// PyTorch's is 0.50000006.)
func ResizeBilinear(x []float32, inH, inW, outH, outW int) []float32 {
	coords := func(in, out int) func(i int) (i0, i1 int, l1 float32) {
		scale := float64(float32(in) / float32(out))
		return func(i int) (i0, i1 int, l1 float32) {
			s := scale*(float64(i)+0.5) - 0.5
			if s < 0 {
				s = 0
			}
			i0 = min(int(s), in-1)
			i1 = min(i0+1, in-1)
			return i0, i1, float32(s - float64(i0))
		}
	}
	cy, cx := coords(inH, outH), coords(inW, outW)
	y := make([]float32, outH*outW)
	for oy := range outH {
		y0, y1, ly := cy(oy)
		for ox := range outW {
			x0, x1, lx := cx(ox)
			top := (1-lx)*x[y0*inW+x0] + lx*x[y0*inW+x1]
			bot := (1-lx)*x[y1*inW+x0] + lx*x[y1*inW+x1]
			y[oy*outW+ox] = (1-ly)*top + ly*bot
		}
	}
	return y
}
