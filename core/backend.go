package core

import (
	"errors"
	"fmt"
	"math"
)

// Backend is the set of ops the models need. Every op takes backend-owned tensors, returns a new one and
// never modifies its inputs, except WriteRows, which fills a cache in place. Shapes follow PyTorch: activations of the transformer are [B, L, C] (batch,
// tokens, channels), images and feature maps are [B, C, H, W].
//
// The CPU backend (core/cpu) is the reference: each op there is written to be read as the spec. Other
// backends must agree with it within the per-op tolerances of the cross-backend test.
//
// A backend that cannot run an op (or a shape of it) returns an error wrapping ErrUnsupported instead of
// panicking.
type Backend interface {
	// Name is a short identifier: "cpu", "webgpu".
	Name() string

	// Upload copies a host tensor into backend memory.
	Upload(h HostTensor) (*Tensor, error)
	// Download copies a tensor back to host memory.
	Download(t *Tensor) (HostTensor, error)
	// Free releases t's memory early (GPU buffers); t and views of it (Reshape) must not be used
	// afterwards. Backends are not required to detect such use (the CPU backend leaves memory to the
	// garbage collector). Freeing nil is a no-op.
	Free(t *Tensor)

	// Linear is y = x @ w^T + b over the last dimension (PyTorch F.linear): x [..., K], w [M, K], b [M] or nil;
	// y [..., M].
	Linear(x, w, b *Tensor) (*Tensor, error)
	// Attention is softmax(q_h @ k_h^T * scale + mask) @ v_h per batch and head, heads stored side by side in
	// the channel dimension (head h owns channels [h*d, (h+1)*d)): q [B, L, C], k and v [B, S, C], mask
	// [L, S] additive or nil; out [B, L, C]. A row whose scores are all -Inf yields zeros (PyTorch would
	// give NaN); VAR's masks never fully mask a row.
	Attention(q, k, v *Tensor, heads int, scale float32, mask *Tensor) (*Tensor, error)
	// AttentionPrefix is Attention without a mask over the first n rows of k and v [B, S, C] (0 <= n <= S):
	// the rows of a key/value cache written so far (WriteRows). The result is that of Attention on k and v
	// cut to [B, n, C].
	AttentionPrefix(q, k, v *Tensor, n, heads int, scale float32) (*Tensor, error)

	// LayerNorm normalizes over the last dimension without affine parameters (biased variance).
	LayerNorm(x *Tensor, eps float32) (*Tensor, error)
	// LayerNormAffine is LayerNorm with the elementwise affine of nn.LayerNorm(C): for x [..., C], w [C] and
	// b [C] or nil, y = (x - mean) / sqrt(var + eps) * w + b.
	LayerNormAffine(x, w, b *Tensor, eps float32) (*Tensor, error)
	// Modulate is x * (1 + scale[b]) + shift[b] for x [B, L, C], scale and shift [B, C] (AdaLN).
	Modulate(x, scale, shift *Tensor) (*Tensor, error)
	// GroupNorm normalizes x [B, C, H, W] over groups of C/groups channels, applies the affine w, b [C], and
	// then SiLU when silu is true.
	GroupNorm(x *Tensor, groups int, w, b *Tensor, eps float32, silu bool) (*Tensor, error)
	// NormalizeHeads L2-normalizes each head's d-vector of x [B, L, C] (x / max(|x|, 1e-12), F.normalize)
	// and multiplies head h by scale[h] when scale [heads] is not nil.
	NormalizeHeads(x *Tensor, heads int, scale *Tensor) (*Tensor, error)

	// GELUTanh is GELU with the tanh approximation.
	GELUTanh(x *Tensor) (*Tensor, error)
	// GELU is the exact GELU, x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))) (nn.GELU()).
	GELU(x *Tensor) (*Tensor, error)
	// SiLU is x * sigmoid(x).
	SiLU(x *Tensor) (*Tensor, error)
	// DDPMStep is one reverse step of a learned-range-variance epsilon diffusion (MAR's diffusion head,
	// DDPMCoefs): for x [n, C], the network's output out [n, 2C] (eps, then the variance values) or, with
	// guidance (s.Guided), [2n, 2C] (conditional rows first) and noise [n, C], the sample [n, C].
	DDPMStep(x, out, noise *Tensor, s DDPMCoefs) (*Tensor, error)
	// Add is a + b where b's shape is a suffix of a's (b is broadcast over a's leading dimensions).
	Add(a, b *Tensor) (*Tensor, error)
	// AddMulRows is x + y * g[b] for x, y [B, L, C] and g [B, C] (the gated residual of AdaLN blocks).
	AddMulRows(x, y, g *Tensor) (*Tensor, error)
	// Axpby is alpha*x + beta*y for tensors of equal shape.
	Axpby(alpha float32, x *Tensor, beta float32, y *Tensor) (*Tensor, error)
	// Clamp limits every element to [lo, hi].
	Clamp(x *Tensor, lo, hi float32) (*Tensor, error)

	// SliceLast returns x[..., off:off+n].
	SliceLast(x *Tensor, off, n int) (*Tensor, error)
	// Concat joins tensors along axis; all other dimensions must match.
	Concat(axis int, ts ...*Tensor) (*Tensor, error)
	// Transpose12 swaps the last two dimensions of a 3-D tensor: [A, M, N] -> [A, N, M].
	Transpose12(x *Tensor) (*Tensor, error)
	// Zeros returns a new tensor of the given shape filled with zeros.
	Zeros(shape Shape) (*Tensor, error)
	// WriteRows copies src [B, n, C] into dst [B, S, C] at rows [off, off+n) of every batch element, in
	// place: the one op that modifies a tensor. It lets a key/value cache be allocated once at its final
	// length and filled scale by scale instead of being concatenated anew (and left behind in every
	// intermediate size) at each scale. Ops called before it read dst's old rows, ops after it the new ones;
	// views of dst (Reshape) see the change.
	WriteRows(dst, src *Tensor, off int) error

	// Conv2d is a 2-D convolution (PyTorch Conv2d, dilation 1, groups 1): x [B, Ci, H, W], w [Co, Ci, kh, kw],
	// b [Co] or nil, zero padding pad = {top, left, bottom, right}; out [B, Co, H', W'].
	Conv2d(x, w, b *Tensor, stride int, pad [4]int) (*Tensor, error)
	// Upsample2x is nearest-neighbour 2x upsampling of [B, C, H, W].
	Upsample2x(x *Tensor) (*Tensor, error)
	// ResizeBicubic is F.interpolate(mode='bicubic', align_corners=False) with A = -0.75.
	ResizeBicubic(x *Tensor, outH, outW int) (*Tensor, error)
	// ResizeArea is F.interpolate(mode='area'), i.e. adaptive average pooling.
	ResizeArea(x *Tensor, outH, outW int) (*Tensor, error)

	// Embedding gathers rows of table [V, C]: out [len(ids), C]. Every id must be in [0, V).
	Embedding(table *Tensor, ids []int) (*Tensor, error)
	// NearestCode returns, for each row z of z [N, C], argmin_v |z|^2 + |e_v|^2 - 2 z.e_v over codebook
	// [V, C] (first index on ties).
	NearestCode(z, codebook *Tensor) ([]int, error)
}

// FusedLinearGELU is an optional ability: GELUTanh(Linear(x, w, b)) in one kernel (the MLP's first layer),
// saving a pass over the [N, 4C] activation. Ops.LinearGELU uses it when present and composes the two ops
// otherwise, which is the reference.
type FusedLinearGELU interface {
	LinearGELU(x, w, b *Tensor) (*Tensor, error)
}

// FusedConv2dAdd is an optional ability: res + Conv2d(x, w, b, stride, pad) in one op, for res of the
// output's shape (the residual connections of the VAE's blocks), saving the output's extra passes and a
// second full-size tensor. It must round as Add(res, Conv2d(...)) does. Ops.Conv2dAdd uses it when
// present and composes the two ops otherwise, which is the reference.
type FusedConv2dAdd interface {
	Conv2dAdd(x, w, b *Tensor, stride int, pad [4]int, res *Tensor) (*Tensor, error)
}

// FusedQKVToCache is an optional ability: the attention input of a transformer block with a key/value
// cache in one op. From qkv [B, l, 3C] (q, k, v side by side) it returns q [B, l, C] and writes k and v
// into rows [n, n+l) of the caches kc, vc [B, S, C]; with norm, q and k are first L2-normalised per head
// and q multiplied by qScale[h] (NormalizeHeads; qScale may be nil). It replaces seven small ops (three
// slices, two normalisations, two row writes) per block and scale, and must round as they do.
// Ops.QKVToCache uses it when present and composes those ops otherwise, which is the reference.
type FusedQKVToCache interface {
	QKVToCache(qkv *Tensor, heads int, norm bool, qScale, kc, vc *Tensor, n int) (*Tensor, error)
}

// IdleReleaser is an optional ability of backends that keep freed memory for reuse (the WebGPU buffer
// pool): ReleaseIdle gives that memory back. Such a pool reuses memory only for tensors of the sizes it
// held, so when work moves on to tensors of other sizes (VAR's transformer to the VQVAE decoder, and back
// at the next image) the previous phase's memory would sit idle beside the new one's. Ops.ReleaseIdle
// calls it where the backend has it.
type IdleReleaser interface {
	ReleaseIdle() error
}

// Asynchronous is an optional ability of backends whose ops record work that a device runs later (WebGPU):
// an op returns before its result exists, and only a Download waits for the device. Host work placed
// between recording and the next Download then runs while the device works. On other backends (the CPU)
// an op's result exists when it returns, so deferring host work gains nothing and only delays it.
// IsAsynchronous reports it.
type Asynchronous interface {
	Asynchronous() bool
}

// IsAsynchronous reports whether b's ops only record work that a device runs later (Asynchronous).
func IsAsynchronous(b Backend) bool {
	a, ok := b.(Asynchronous)
	return ok && a.Asynchronous()
}

// ErrUnsupported is wrapped by errors of ops a backend cannot run.
var ErrUnsupported = errors.New("unsupported by backend")

// ErrDeviceLost is wrapped by every backend's "the GPU device is gone" error (a driver reset, the browser
// reclaiming the GPU, out of memory): the model's weights are fine, and a backend opened again (or
// another backend) can run the same request. Front ends test for it with errors.Is.
var ErrDeviceLost = errors.New("GPU device lost")

// Reshape returns a view of t with a new shape of the same element count. Backends store tensors densely
// in row-major order, so a reshape never moves data.
func Reshape(t *Tensor, shape ...int) (*Tensor, error) {
	s := Shape(shape)
	for _, d := range s {
		if d < 0 {
			return nil, &ShapeError{Op: "reshape", Msg: "negative dimension in " + s.String()}
		}
	}
	if s.Numel() != t.shape.Numel() {
		return nil, &ShapeError{Op: "reshape", Msg: "cannot reshape " + t.shape.String() + " to " + s.String()}
	}
	return &Tensor{shape: s.Clone(), storage: t.storage}, nil
}

// ShapeError reports an op called with shapes it does not accept.
type ShapeError struct {
	Op  string
	Msg string
}

func (e *ShapeError) Error() string { return e.Op + ": " + e.Msg }

// DDPMCoefs are one step's float32 coefficients for Backend.DDPMStep (improved DDPM's p_sample with
// LEARNED_RANGE variance and epsilon prediction, no clipping). With guidance eps = u + CFG*(c - u) from
// the conditional row c and the unconditional row u; without, eps = c. Then
//
//	frac = (v + 1)/2, log_var = frac*MaxLog + (1 - frac)*MinLog,
//	x0 = SqrtRecipAcp*x - SqrtRecipm1Acp*eps, mean = Coef1*x0 + Coef2*x,
//	sample = mean + Nonzero*exp(0.5*log_var)*noise*Temperature
//
// each in float32, in that order (the official code's).
type DDPMCoefs struct {
	Guided                                                              bool
	CFG                                                                 float32
	SqrtRecipAcp, SqrtRecipm1Acp, Coef1, Coef2, MinLog, MaxLog, Nonzero float32
	Temperature                                                         float32
}

// DDPMSample is DDPMStep's value for one element: x, the conditional row's eps and variance value v, the
// unconditional row's eps u (used with guidance) and the noise. It is the specification every backend's
// DDPMStep computes.
func DDPMSample(s DDPMCoefs, x, eps, u, v, noise float32) float32 {
	t := DDPMTermsOf(s, x, eps, u, v)
	return t.Mean + s.Nonzero*float32(math.Exp(float64(0.5*t.LogVar)))*noise*s.Temperature
}

// DDPMTerms are a step's intermediate values for one element (the official p_mean_variance's).
type DDPMTerms struct{ Eps, LogVar, X0, Mean float32 }

// DDPMTermsOf computes them as DDPMSample does.
func DDPMTermsOf(s DDPMCoefs, x, eps, u, v float32) DDPMTerms {
	if s.Guided {
		eps = u + s.CFG*(eps-u)
	}
	frac := (v + 1) / 2
	logVar := frac*s.MaxLog + (1-frac)*s.MinLog
	x0 := s.SqrtRecipAcp*x - s.SqrtRecipm1Acp*eps
	return DDPMTerms{Eps: eps, LogVar: logVar, X0: x0, Mean: s.Coef1*x0 + s.Coef2*x}
}

// CheckDDPMStep checks DDPMStep's shapes: x [n, C], out [n or 2n (guided), 2C], noise [n, C].
func CheckDDPMStep(x, out, noise Shape, guided bool) (n, c int, err error) {
	if len(x) != 2 || len(out) != 2 || !noise.Equal(x) {
		return 0, 0, &ShapeError{Op: "ddpm-step", Msg: fmt.Sprintf("want x [n, C], out [rows, 2C] and noise like x, got %v, %v, %v", x, out, noise)}
	}
	n, c = x[0], x[1]
	rows := n
	if guided {
		rows = 2 * n
	}
	if out[0] != rows || out[1] != 2*c {
		return 0, 0, &ShapeError{Op: "ddpm-step", Msg: fmt.Sprintf("out %v, want [%d, %d] for x %v (guided %v)", out, rows, 2*c, x, guided)}
	}
	return n, c, nil
}
