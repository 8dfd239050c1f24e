package varmodel

import (
	"fmt"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/edit"
)

// Zero-shot editing, as FoundationVision/VAR's demo_zero_shot_edit.ipynb does it: the input image's
// multi-scale tokens, a keep-mask on the last scale's grid, and at every scale the mask resized to that
// scale (bilinear, align_corners=False) and thresholded at 0.5 (every position kept when the scale has
// at most 3 tokens). The transformer runs on every position as in generation; after sampling, the token
// of every kept position is swapped for the input's before f_hat is updated, so the kept region steers
// what is generated around it. Label Classes (the null class, for both CFG halves) in-paints without a
// class; any other label edits towards that class.

// Edit is what a Request keeps of an input image (per scale: its tokens and where they are kept).
type Edit = edit.Edit

// BoxMask is the notebook's get_edit_mask on a p x p grid (edit.BoxMask). 1 = keep.
func BoxMask(p int, box [4]float64, inpaint bool) []float32 { return edit.BoxMask(p, p, box, inpaint) }

// KeepMasks resizes a keep-mask on the last scale's p x p grid to every scale (edit.KeepMasks).
func KeepMasks(mask []float32, p int, patchNums []int) ([][]bool, error) {
	grids := make([][2]int, len(patchNums))
	for i, pn := range patchNums {
		grids[i] = [2]int{pn, pn}
	}
	return edit.KeepMasks(mask, p, p, grids)
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
