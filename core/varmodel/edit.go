package varmodel

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

// Zero-shot editing, as FoundationVision/VAR's demo_zero_shot_edit.ipynb does it: the input image's
// multi-scale tokens, a keep-mask on the last scale's grid, and at every scale the mask resized to that
// scale (bilinear, align_corners=False) and thresholded at 0.5 (every position kept when the scale has
// at most 3 tokens). The transformer runs on every position as in generation; after sampling, the token
// of every kept position is swapped for the input's before f_hat is updated, so the kept region steers
// what is generated around it. Label Classes (the null class, for both CFG halves) in-paints without a
// class; any other label edits towards that class.

// Edit is what a Request keeps of an input image.
type Edit struct {
	Tokens [][]int  // per scale: the input image's token ids (pn*pn, row-major)
	Keep   [][]bool // per scale: true where the input's token is kept
}

// BoxMask is the notebook's get_edit_mask on a p x p grid: the box (fractions of the image, y0, x0, y1,
// x1) covers rows round(y0*p) to round(y1*p) and columns round(x0*p) to round(x1*p) (Python's round:
// half to even). With inpaint the box is regenerated and the rest kept (mask 0 inside, 1 outside);
// without (out-painting) the box is kept and the rest regenerated. 1 = keep.
func BoxMask(p int, box [4]float64, inpaint bool) []float32 {
	r0, c0 := int(math.RoundToEven(box[0]*float64(p))), int(math.RoundToEven(box[1]*float64(p)))
	r1, c1 := int(math.RoundToEven(box[2]*float64(p))), int(math.RoundToEven(box[3]*float64(p)))
	m := make([]float32, p*p)
	for r := max(r0, 0); r < min(r1, p); r++ {
		for c := max(c0, 0); c < min(c1, p); c++ {
			m[r*p+c] = 1
		}
	}
	if inpaint {
		for i := range m {
			m[i] = 1 - m[i]
		}
	}
	return m
}

// KeepMasks resizes a keep-mask on the last scale's p x p grid to every scale: F.interpolate(mode=
// 'bilinear', align_corners=False) > 0.5, and every position kept at scales of at most 3 tokens.
func KeepMasks(mask []float32, p int, patchNums []int) ([][]bool, error) {
	if len(mask) != p*p {
		return nil, fmt.Errorf("edit mask has %d values, want %d x %d", len(mask), p, p)
	}
	out := make([][]bool, len(patchNums))
	for si, pn := range patchNums {
		keep := make([]bool, pn*pn)
		if pn*pn <= 3 {
			for i := range keep {
				keep[i] = true
			}
		} else {
			r := resizeBilinear(mask, p, pn)
			for i, v := range r {
				keep[i] = v > 0.5
			}
		}
		out[si] = keep
	}
	return out, nil
}

// resizeBilinear is F.interpolate(x[None, None], size=(out, out), mode='bilinear', align_corners=False)
// of an in x in plane: source coordinate (i + 0.5) * in/out - 0.5, clamped at 0, linear between the two
// neighbours. The rounding is PyTorch's CPU kernel's, which decides masks that land on 0.5 exactly: the
// scale in/out in float32, the coordinate in float64 (the index + 0.5 is a double there), the weight
// rounded to float32 and the blend in float32. (With the coordinate in float32, the var-tiny edit
// golden's off-centre box gives a weight of exactly 0.5 and loses one kept position; PyTorch's is
// 0.50000006.)
func resizeBilinear(x []float32, in, out int) []float32 {
	scale := float64(float32(in) / float32(out))
	coord := func(i int) (i0, i1 int, l1 float32) {
		s := scale*(float64(i)+0.5) - 0.5
		if s < 0 {
			s = 0
		}
		i0 = min(int(s), in-1)
		i1 = min(i0+1, in-1)
		return i0, i1, float32(s - float64(i0))
	}
	y := make([]float32, out*out)
	for oy := 0; oy < out; oy++ {
		y0, y1, ly := coord(oy)
		for ox := 0; ox < out; ox++ {
			x0, x1, lx := coord(ox)
			top := (1-lx)*x[y0*in+x0] + lx*x[y0*in+x1]
			bot := (1-lx)*x[y1*in+x0] + lx*x[y1*in+x1]
			y[oy*out+ox] = (1-ly)*top + ly*bot
		}
	}
	return y
}

// EditOf tokenizes image [1, 3, H, W] (values in [-1, 1], the model's image size) with the VQVAE
// (img_to_idxBl) and pairs its tokens with mask, a keep-mask on the last scale's grid (1 = keep; BoxMask
// makes the notebook's).
func (p *Pipeline) EditOf(o *core.Ops, image core.HostTensor, mask []float32) (*Edit, error) {
	pn := p.VAR.Config().PatchNums
	side := p.VAE.ImageSize()
	if !image.Shape.Equal(core.Shape{1, 3, side, side}) {
		return nil, fmt.Errorf("edit image %v, want [1, 3, %d, %d]", image.Shape, side, side)
	}
	keep, err := KeepMasks(mask, pn[len(pn)-1], pn)
	if err != nil {
		return nil, err
	}
	x := o.Upload(image)
	f := p.VAE.Encode(o, x)
	ids, _ := p.VAE.Tokenize(o, f, false)
	o.Free(x, f)
	if err := o.Err(); err != nil {
		return nil, err
	}
	return &Edit{Tokens: ids, Keep: keep}, nil
}

// check reports an edit that does not fit the model or the batch.
func (e *Edit) check(patchNums []int) error {
	if len(e.Tokens) != len(patchNums) || len(e.Keep) != len(patchNums) {
		return fmt.Errorf("edit has %d scales of tokens and %d of masks, the model %d", len(e.Tokens), len(e.Keep), len(patchNums))
	}
	for si, pn := range patchNums {
		if len(e.Tokens[si]) != pn*pn || len(e.Keep[si]) != pn*pn {
			return fmt.Errorf("edit scale %d: %d tokens and %d mask values, want %d", si, len(e.Tokens[si]), len(e.Keep[si]), pn*pn)
		}
	}
	return nil
}

// apply swaps the kept positions of scale si's ids (B images of n tokens each) for the input's.
func (e *Edit) apply(si int, ids []int) {
	n := len(e.Keep[si])
	for b := 0; b+n <= len(ids); b += n {
		for j, k := range e.Keep[si] {
			if k {
				ids[b+j] = e.Tokens[si][j]
			}
		}
	}
}
