package core

import (
	"fmt"
	"image"
	"image/color"
	"math"
)

// ToImage converts image b of x [B, 3, H, W] with values in [0, 1] to 8-bit RGB (rounded to nearest,
// clamped).
func ToImage(x HostTensor, b int) (*image.NRGBA, error) {
	s := x.Shape
	if len(s) != 4 || s[1] != 3 || b < 0 || b >= s[0] || len(x.Data) != s.Numel() {
		return nil, fmt.Errorf("image %d of a %v tensor: want [B, 3, H, W]", b, s)
	}
	h, w := s[2], s[3]
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	plane := h * w
	base := b * 3 * plane
	to8 := func(v float32) uint8 {
		f := math.Round(float64(v) * 255)
		if !(f >= 0) { // also catches NaN
			return 0
		}
		if f > 255 {
			return 255
		}
		return uint8(f)
	}
	for y := 0; y < h; y++ {
		for xx := 0; xx < w; xx++ {
			i := y*w + xx
			img.SetNRGBA(xx, y, color.NRGBA{
				R: to8(x.Data[base+i]), G: to8(x.Data[base+plane+i]), B: to8(x.Data[base+2*plane+i]), A: 255,
			})
		}
	}
	return img, nil
}

// SquaredError is the sum over i of (a[i] - b[i])^2 in float64, for a and b of equal length.
func SquaredError(a, b []float32) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	return se
}

// PSNR is the peak signal-to-noise ratio in dB of image values b against a, both in [0, 1] and of equal
// length: 10*log10(1/MSE), +Inf when they are identical.
func PSNR(a, b []float32) float64 {
	se := SquaredError(a, b)
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(float64(len(a))/se)
}
