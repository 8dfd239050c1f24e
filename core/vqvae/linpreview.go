package vqvae

import (
	"errors"
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
)

// A linear preview replaces the decoder by a per-model affine map from f_hat's Cvae latent channels to
// RGB, applied at the latent resolution P and upsampled to the image size. A preview then costs
// 3*(Cvae+1) multiply-adds per latent pixel plus the upsampling, instead of a decode (VAR-d16: 25k
// multiply-adds and ~0.8 ms of one CPU core, against a 394 GFLOP decode). It runs on the host: f_hat is small ([B, Cvae, P, P], 32 KB for d16),
// so downloading it and mapping it in plain Go costs less than the extra dispatches and the full-size
// readback a GPU kernel would need, and it is the same code on every backend.
//
// The map is fitted per model by least squares (PreviewFit) on pairs of f_hat and its full decode
// area-downsampled to P x P: the colour a decode gives a latent pixel's image block, as a linear
// function of that pixel's latent vector. The decoder is far from linear, so the preview is blurred and
// its colours approximate; it shows the layout and the colours that scale has decided.

// LinearPreview is a fitted latent-to-RGB map.
type LinearPreview struct {
	Cvae int
	// W_3K is [3, Cvae+1] row-major: row c holds the weights of RGB channel c for the Cvae latent
	// channels, then its bias. The result is in image units, [0, 1].
	W_3K []float32
}

// NewLinearPreview checks a map's size and values.
func NewLinearPreview(cvae int, w_3K []float32) (*LinearPreview, error) {
	if cvae < 1 {
		return nil, fmt.Errorf("linear preview: %d latent channels, want >= 1", cvae)
	}
	if len(w_3K) != 3*(cvae+1) {
		return nil, fmt.Errorf("linear preview: %d numbers for %d latent channels, want 3*(%d+1) = %d",
			len(w_3K), cvae, cvae, 3*(cvae+1))
	}
	for i, v := range w_3K {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("linear preview: coefficient %d is %g", i, v)
		}
	}
	return &LinearPreview{Cvae: cvae, W_3K: append([]float32(nil), w_3K...)}, nil
}

// MapLatent applies the affine map to every latent pixel of fhat [B, Cvae, H, W]: [B, 3, H, W], not
// clamped.
func (lp *LinearPreview) MapLatent(fhat core.HostTensor) (core.HostTensor, error) {
	s := fhat.Shape
	if len(s) != 4 || s[1] != lp.Cvae || len(fhat.Data) != s.Numel() {
		return core.HostTensor{}, fmt.Errorf("linear preview: f_hat %v, want [B, %d, H, W]", s, lp.Cvae)
	}
	b, c, hw := s[0], s[1], s[2]*s[3]
	out := core.HostTensor{Shape: core.Shape{b, 3, s[2], s[3]}, Data: make([]float32, b*3*hw)}
	for i := range b {
		f_CP := fhat.Data[i*c*hw : (i+1)*c*hw]
		for rgb := range 3 {
			w := lp.W_3K[rgb*(c+1) : (rgb+1)*(c+1)]
			o_P := out.Data[(i*3+rgb)*hw : (i*3+rgb+1)*hw]
			for p := range o_P {
				o_P[p] = w[c]
			}
			for ch := range c {
				wc := w[ch]
				for p, v := range f_CP[ch*hw : (ch+1)*hw] {
					o_P[p] += wc * v
				}
			}
		}
	}
	return out, nil
}

// Apply is the preview of fhat [B, Cvae, P, P]: the map at P x P, bilinearly upsampled to side x side and
// clamped to [0, 1]: [B, 3, side, side].
func (lp *LinearPreview) Apply(fhat core.HostTensor, side int) (core.HostTensor, error) {
	if side < 1 {
		return core.HostTensor{}, fmt.Errorf("linear preview: image side %d, want >= 1", side)
	}
	small, err := lp.MapLatent(fhat)
	if err != nil {
		return core.HostTensor{}, err
	}
	img := resizeBilinear(small, side, side)
	for i, v := range img.Data {
		img.Data[i] = min(max(v, 0), 1)
	}
	return img, nil
}

// resizeBilinear is F.interpolate(x, size, mode='bilinear', align_corners=False) for x [B, C, H, W] on
// the host: output index i samples input coordinate max(0, (i+0.5)*in/out - 0.5) between its two
// neighbours (the second clamped to the border). Bilinear, not bicubic: it never overshoots, and bicubic
// came out only 0.06 dB closer to the full previews on fashionvar, with 4x the taps.
func resizeBilinear(x core.HostTensor, outH, outW int) core.HostTensor {
	s := x.Shape
	planes, h, w := s[0]*s[1], s[2], s[3]
	ty, tx := linearTaps(h, outH), linearTaps(w, outW)
	out := core.HostTensor{Shape: core.Shape{s[0], s[1], outH, outW}, Data: make([]float32, planes*outH*outW)}
	row_W := make([]float32, outW) // an input row interpolated along x, one at a time per tap
	for pl := range planes {
		in_HW := x.Data[pl*h*w : (pl+1)*h*w]
		out_HW := out.Data[pl*outH*outW : (pl+1)*outH*outW]
		rows := make([][]float32, h) // input rows resized along x, computed when first needed
		for oy, t := range ty {
			dst := out_HW[oy*outW : (oy+1)*outW]
			for j := range 2 {
				iy := t.idx[j]
				if rows[iy] == nil {
					src := in_HW[iy*w : (iy+1)*w]
					for ox, u := range tx {
						row_W[ox] = src[u.idx[0]]*u.w[0] + src[u.idx[1]]*u.w[1]
					}
					rows[iy] = append([]float32(nil), row_W...)
				}
				for ox, v := range rows[iy] {
					dst[ox] += t.w[j] * v
				}
			}
		}
	}
	return out
}

// linearTap is one output index's two input indices and their weights.
type linearTap struct {
	idx [2]int
	w   [2]float32
}

func linearTaps(in, out int) []linearTap {
	taps := make([]linearTap, out)
	scale := float64(in) / float64(out)
	for i := range taps {
		src := max((float64(i)+0.5)*scale-0.5, 0)
		i0 := min(int(src), in-1)
		i1 := min(i0+1, in-1)
		l := float32(src - float64(i0))
		taps[i] = linearTap{idx: [2]int{i0, i1}, w: [2]float32{1 - l, l}}
	}
	return taps
}

// PreviewFit accumulates the least-squares normal equations of a LinearPreview: for every latent pixel
// of the f_hats it is given, x = (its Cvae channels, 1) and y = the RGB mean of its image block.
// Accumulating X^T X and X^T Y in float64 keeps its memory at (Cvae+1)^2 numbers however many images
// are fitted.
type PreviewFit struct {
	cvae    int
	xtx_KK  []float64 // K = Cvae+1
	xty_K3  []float64
	yty_3   [3]float64
	samples int
}

// NewPreviewFit starts a fit for a VQVAE with cvae latent channels.
func NewPreviewFit(cvae int) *PreviewFit {
	k := cvae + 1
	return &PreviewFit{cvae: cvae, xtx_KK: make([]float64, k*k), xty_K3: make([]float64, k*3)}
}

// Samples is the number of latent pixels added so far.
func (f *PreviewFit) Samples() int { return f.samples }

// Add adds the pairs of fhat [B, Cvae, P, P] and its decode img [B, 3, P*s, P*s] in [0, 1] (s >= 1 an
// integer, the decoder's upsampling): img is averaged over each s x s block (area downsampling to P).
func (f *PreviewFit) Add(fhat, img core.HostTensor) error {
	fs, is := fhat.Shape, img.Shape
	if len(fs) != 4 || fs[1] != f.cvae || len(fhat.Data) != fs.Numel() {
		return fmt.Errorf("preview fit: f_hat %v, want [B, %d, P, P]", fs, f.cvae)
	}
	if len(is) != 4 || is[0] != fs[0] || is[1] != 3 || len(img.Data) != is.Numel() ||
		fs[2] == 0 || fs[3] == 0 || is[2]%fs[2] != 0 || is[3]%fs[3] != 0 || is[2]/fs[2] != is[3]/fs[3] {
		return fmt.Errorf("preview fit: image %v for f_hat %v: want [%d, 3, H, W] with H, W the same multiple of %d, %d",
			is, fs, fs[0], fs[2], fs[3])
	}
	for _, data := range [][]float32{fhat.Data, img.Data} {
		for _, v := range data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return errors.New("preview fit: f_hat or its image has a non-finite value")
			}
		}
	}
	b, c, ph, pw := fs[0], fs[1], fs[2], fs[3]
	s := is[2] / ph
	k := c + 1
	x_K := make([]float64, k)
	var y [3]float64
	inv := 1 / float64(s*s)
	for i := range b {
		for py := range ph {
			for px := range pw {
				for ch := range c {
					x_K[ch] = float64(fhat.Data[((i*c+ch)*ph+py)*pw+px])
				}
				x_K[c] = 1
				for rgb := range 3 {
					plane := img.Data[(i*3+rgb)*is[2]*is[3] : (i*3+rgb+1)*is[2]*is[3]]
					var sum float64
					for dy := range s {
						row := plane[(py*s+dy)*is[3]+px*s:]
						for dx := range s {
							sum += float64(row[dx])
						}
					}
					y[rgb] = sum * inv
				}
				for r, xr := range x_K {
					for cc := r; cc < k; cc++ { // the upper triangle; Solve mirrors it
						f.xtx_KK[r*k+cc] += xr * x_K[cc]
					}
					for rgb := range 3 {
						f.xty_K3[r*3+rgb] += xr * y[rgb]
					}
				}
				for rgb := range 3 {
					f.yty_3[rgb] += y[rgb] * y[rgb]
				}
				f.samples++
			}
		}
	}
	return nil
}

// Solve returns the least-squares map and its root-mean-square residual over the samples (image units,
// at the latent resolution). A ridge of 1e-9 of the mean diagonal keeps latent channels that never vary
// in the samples from making the system singular; it changes a well-posed fit by about as little.
func (f *PreviewFit) Solve() (*LinearPreview, float64, error) {
	k := f.cvae + 1
	if f.samples < k {
		return nil, 0, fmt.Errorf("preview fit: %d samples for %d unknowns per channel", f.samples, k)
	}
	a_KK := make([]float64, k*k)
	var trace float64
	for r := range k {
		for c := range k {
			if c >= r {
				a_KK[r*k+c] = f.xtx_KK[r*k+c]
			} else {
				a_KK[r*k+c] = f.xtx_KK[c*k+r]
			}
		}
		trace += a_KK[r*k+r]
	}
	ridge := 1e-9 * trace / float64(k)
	for r := range k {
		a_KK[r*k+r] += ridge
	}
	l_KK, err := cholesky(a_KK, k)
	if err != nil {
		return nil, 0, err
	}
	w_3K := make([]float32, 3*k)
	var sse float64
	for rgb := range 3 {
		b_K := make([]float64, k)
		for r := range k {
			b_K[r] = f.xty_K3[r*3+rgb]
		}
		x_K := choleskySolve(l_KK, k, b_K)
		// Residual sum of squares from the normal equations: y.y - 2 w.X^T y + w.X^T X w.
		var wXty, wAw float64
		for r := range k {
			wXty += x_K[r] * f.xty_K3[r*3+rgb]
			for c := range k {
				v := f.xtx_KK[min(r, c)*k+max(r, c)]
				wAw += x_K[r] * v * x_K[c]
			}
		}
		sse += max(f.yty_3[rgb]-2*wXty+wAw, 0)
		for r := range k {
			w_3K[rgb*k+r] = float32(x_K[r])
		}
	}
	lp, err := NewLinearPreview(f.cvae, w_3K)
	if err != nil {
		return nil, 0, err
	}
	return lp, math.Sqrt(sse / float64(3*f.samples)), nil
}

// cholesky factors the symmetric positive definite a [k, k] as L L^T and returns L (lower triangle).
func cholesky(a []float64, k int) ([]float64, error) {
	l := make([]float64, k*k)
	for j := range k {
		d := a[j*k+j]
		for p := range j {
			d -= l[j*k+p] * l[j*k+p]
		}
		if !(d > 0) {
			return nil, fmt.Errorf("preview fit: the normal equations are not positive definite (pivot %d is %g)", j, d)
		}
		l[j*k+j] = math.Sqrt(d)
		for i := j + 1; i < k; i++ {
			s := a[i*k+j]
			for p := range j {
				s -= l[i*k+p] * l[j*k+p]
			}
			l[i*k+j] = s / l[j*k+j]
		}
	}
	return l, nil
}

// choleskySolve solves L L^T x = b.
func choleskySolve(l []float64, k int, b []float64) []float64 {
	y := make([]float64, k)
	for i := range k {
		s := b[i]
		for p := range i {
			s -= l[i*k+p] * y[p]
		}
		y[i] = s / l[i*k+i]
	}
	x := make([]float64, k)
	for i := k - 1; i >= 0; i-- {
		s := y[i]
		for p := i + 1; p < k; p++ {
			s -= l[p*k+i] * x[p]
		}
		x[i] = s / l[i*k+i]
	}
	return x
}
