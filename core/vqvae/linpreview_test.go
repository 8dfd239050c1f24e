package vqvae

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/webvar/webvar/core"
)

// randomHost is a tensor of uniform values in [lo, hi).
func randomHost(rng *rand.Rand, lo, hi float32, shape ...int) core.HostTensor {
	h := core.HostTensor{Shape: core.Shape(shape), Data: make([]float32, core.Shape(shape).Numel())}
	for i := range h.Data {
		h.Data[i] = lo + (hi-lo)*rng.Float32()
	}
	return h
}

// nearestUp repeats every pixel of x [B, C, H, W] s x s times: an image whose s x s blocks are exactly
// the latent map's values, so that area downsampling gives them back.
func nearestUp(x core.HostTensor, s int) core.HostTensor {
	b, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	out := core.HostTensor{Shape: core.Shape{b, c, h * s, w * s}, Data: make([]float32, b*c*h*s*w*s)}
	for pl := range b * c {
		for y := range h * s {
			for xx := range w * s {
				out.Data[(pl*h*s+y)*w*s+xx] = x.Data[(pl*h+y/s)*w+xx/s]
			}
		}
	}
	return out
}

// The fit recovers an affine map exactly when the image blocks are that map of the latent pixels, with
// the residual near 0; feeding the data in two batches gives the same map as one.
func TestPreviewFitRecoversAffineMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const cvae, p, s = 5, 4, 3
	w := randomHost(rng, -1, 1, 3*(cvae+1))
	truth, err := NewLinearPreview(cvae, w.Data)
	if err != nil {
		t.Fatal(err)
	}
	fhat := randomHost(rng, -2, 2, 3, cvae, p, p)
	small, err := truth.MapLatent(fhat)
	if err != nil {
		t.Fatal(err)
	}
	img := nearestUp(small, s)
	fit := NewPreviewFit(cvae)
	if err := fit.Add(fhat, img); err != nil {
		t.Fatal(err)
	}
	if fit.Samples() != 3*p*p {
		t.Fatalf("%d samples, want %d", fit.Samples(), 3*p*p)
	}
	got, rms, err := fit.Solve()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got.W_3K {
		if d := math.Abs(float64(v - w.Data[i])); d > 1e-4 {
			t.Errorf("coefficient %d = %g, want %g (diff %.2g)", i, v, w.Data[i], d)
		}
	}
	if rms > 1e-4 {
		t.Errorf("RMS residual %g of an exact fit, want ~0", rms)
	}

	// Noise in the targets: the fit is no longer exact, its residual says so, and it stays close.
	noisy := img
	noisy.Data = append([]float32(nil), img.Data...)
	for i := range noisy.Data {
		noisy.Data[i] += 0.1 * (rng.Float32() - 0.5)
	}
	two := NewPreviewFit(cvae)
	for _, k := range []int{0, 1} { // the same samples in two Adds: image 0, then images 1 and 2
		lo, hi := []int{0, 1}[k], []int{1, 3}[k]
		f := core.HostTensor{Shape: core.Shape{hi - lo, cvae, p, p}, Data: fhat.Data[lo*cvae*p*p : hi*cvae*p*p]}
		im := core.HostTensor{Shape: core.Shape{hi - lo, 3, p * s, p * s}, Data: noisy.Data[lo*3*p*s*p*s : hi*3*p*s*p*s]}
		if err := two.Add(f, im); err != nil {
			t.Fatal(err)
		}
	}
	got2, rms2, err := two.Solve()
	if err != nil {
		t.Fatal(err)
	}
	if rms2 < 1e-3 || rms2 > 0.05 {
		t.Errorf("RMS residual %g with +-0.05 noise, want about 0.03/sqrt(s*s)", rms2)
	}
	for i, v := range got2.W_3K {
		if d := math.Abs(float64(v - w.Data[i])); d > 0.05 {
			t.Errorf("noisy fit: coefficient %d = %g, want %g", i, v, w.Data[i])
		}
	}
}

func TestPreviewFitRejectsBadInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	fit := NewPreviewFit(4)
	if _, _, err := fit.Solve(); err == nil {
		t.Error("Solve without samples succeeded")
	}
	fhat := randomHost(rng, -1, 1, 1, 4, 2, 2)
	for _, img := range []core.HostTensor{
		randomHost(rng, 0, 1, 1, 3, 5, 5), // not a multiple of the latent side
		randomHost(rng, 0, 1, 2, 3, 4, 4), // another batch size
		randomHost(rng, 0, 1, 1, 1, 4, 4), // grey
		randomHost(rng, 0, 1, 1, 3, 4, 6), // different factors along y and x
	} {
		if err := fit.Add(fhat, img); err == nil {
			t.Errorf("Add accepted an image %v for f_hat %v", img.Shape, fhat.Shape)
		}
	}
	if err := fit.Add(randomHost(rng, -1, 1, 1, 3, 2, 2), randomHost(rng, 0, 1, 1, 3, 4, 4)); err == nil {
		t.Error("Add accepted f_hat with 3 channels for a 4-channel fit")
	}
	bad := randomHost(rng, 0, 1, 1, 3, 4, 4)
	bad.Data[5] = float32(math.NaN())
	if err := fit.Add(fhat, bad); err == nil {
		t.Error("Add accepted a NaN")
	}
	if fit.Samples() != 0 {
		t.Errorf("rejected inputs added %d samples", fit.Samples())
	}
	if _, err := NewLinearPreview(4, make([]float32, 14)); err == nil {
		t.Error("NewLinearPreview accepted 14 numbers for 4 channels (want 15)")
	}
	w := make([]float32, 15)
	w[3] = float32(math.Inf(1))
	if _, err := NewLinearPreview(4, w); err == nil {
		t.Error("NewLinearPreview accepted Inf")
	}
}

// Apply gives [B, 3, side, side] in [0, 1]: a constant latent maps to the clamped constant colour, and the
// upsampling is PyTorch's bilinear (align_corners=False).
func TestLinearPreviewApply(t *testing.T) {
	const cvae = 2
	// R = f0, G = f1 - 0.5, B = 2 (clamped to 1).
	lp, err := NewLinearPreview(cvae, []float32{1, 0, 0, 0, 1, -0.5, 0, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	fhat := core.HostTensor{Shape: core.Shape{2, cvae, 3, 3}, Data: make([]float32, 2*cvae*9)}
	for i := range 9 {
		fhat.Data[i], fhat.Data[9+i] = 0.25, 0.7 // image 0: f0 = 0.25, f1 = 0.7
		fhat.Data[18+i], fhat.Data[27+i] = -1, 0 // image 1: f0 = -1 (R clamped to 0), f1 = 0
	}
	img, err := lp.Apply(fhat, 12)
	if err != nil {
		t.Fatal(err)
	}
	if want := (core.Shape{2, 3, 12, 12}); fmt.Sprint(img.Shape) != fmt.Sprint(want) {
		t.Fatalf("shape %v, want %v", img.Shape, want)
	}
	want := [2][3]float32{{0.25, 0.2, 1}, {0, 0, 1}}
	for b := range 2 {
		for c := range 3 {
			for i := range 144 {
				if v := img.Data[(b*3+c)*144+i]; math.Abs(float64(v-want[b][c])) > 1e-6 {
					t.Fatalf("image %d channel %d pixel %d = %g, want %g", b, c, i, v, want[b][c])
				}
			}
		}
	}
	// Bilinear 2 -> 4 of [0, 1] is [0, 0.25, 0.75, 1] (torch.nn.functional.interpolate, bilinear).
	ramp := core.HostTensor{Shape: core.Shape{1, 1, 1, 2}, Data: []float32{0, 1}}
	up := resizeBilinear(ramp, 1, 4)
	for i, w := range []float32{0, 0.25, 0.75, 1} {
		if math.Abs(float64(up.Data[i]-w)) > 1e-6 {
			t.Errorf("bilinear 2 -> 4: element %d = %g, want %g", i, up.Data[i], w)
		}
	}
	if _, err := lp.Apply(core.HostTensor{Shape: core.Shape{1, 3, 2, 2}, Data: make([]float32, 12)}, 8); err == nil {
		t.Error("Apply accepted f_hat with 3 channels for a 2-channel map")
	}
	if _, err := lp.Apply(fhat, 0); err == nil {
		t.Error("Apply accepted side 0")
	}
}

// One VAR-d16 preview on the host: f_hat [1, 32, 16, 16] mapped and upsampled to 256x256.
func BenchmarkLinearPreviewApplyD16(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	lp, err := NewLinearPreview(32, randomHost(rng, -0.1, 0.1, 3*33).Data)
	if err != nil {
		b.Fatal(err)
	}
	fhat := randomHost(rng, -1, 1, 1, 32, 16, 16)
	for b.Loop() {
		if _, err := lp.Apply(fhat, 256); err != nil {
			b.Fatal(err)
		}
	}
}
