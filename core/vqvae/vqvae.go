// Package vqvae is VAR's multi-scale residual VQVAE (models/vqvae.py, quant.py, basic_vae.py of the
// official implementation): encoder, quantizer with the Phi residual convs, decoder. The architecture is
// read from the checkpoint's key names and shapes; only patch_nums come from outside (the VAR model).
package vqvae

import (
	"fmt"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/convnet"
)

// Config is what Load read from the checkpoint.
type Config struct {
	V, Cvae    int
	PatchNums  []int // v_patch_nums; the last is the latent size P
	Phi        PhiLayout
	PhiCount   int
	PhiRatio   float32
	Levels     int // resolutions of the decoder; the latent is 2^(Levels-1) times smaller than the image
	HasEncoder bool
}

// Model is a loaded VQVAE. It is read-only after Load and safe to share between goroutines, each with
// its own core.Ops.
type Model struct {
	cfg           Config
	enc, dec      *convnet.Coder
	quantConv     *convnet.Conv
	postQuantConv convnet.Conv
	q             *quantizer
	codebookT     *core.Tensor // [Cvae, V], for the soft (more_smooth) embedding
}

// DefaultPhiRatio is VAR's quant_resi = 0.5.
const DefaultPhiRatio = 0.5

// Load builds the VQVAE from w. patchNums are VAR's patch_nums (the VAE is built with the same list).
// The encoder is optional (a decoder-only checkpoint can generate but not tokenize images).
func Load(w *core.Weights, patchNums []int) (*Model, error) {
	if len(patchNums) == 0 {
		return nil, fmt.Errorf("vqvae: empty patch_nums")
	}
	bd := &convnet.Builder{W: w}
	m := &Model{}
	m.q = loadQuantizer(bd, patchNums, DefaultPhiRatio)
	if bd.Err != nil {
		return nil, fmt.Errorf("vqvae: %w", bd.Err)
	}
	cv := m.q.cvae
	m.postQuantConv = bd.Conv("post_quant_conv", cv, 3, 1, convnet.Pad1)
	m.dec = bd.LoadCoder("decoder", cv, convnet.Taming)
	if w.Has("encoder.conv_in.weight") {
		cin := 3 // RGB; a malformed conv_in is reported by the layer check
		if ws := w.Shape("encoder.conv_in.weight"); len(ws) == 4 {
			cin = ws[1]
		}
		m.enc = bd.LoadCoder("encoder", cin, convnet.Taming)
		qc := bd.Conv("quant_conv", cv, 3, 1, convnet.Pad1)
		m.quantConv = &qc
	}
	// Training statistics, not needed for inference.
	w.MarkUsed("quantize.ema_vocab_hit_SV")
	if bd.Err != nil {
		return nil, fmt.Errorf("vqvae: %w", bd.Err)
	}
	if m.dec.ConvOut.Cout != 3 {
		return nil, fmt.Errorf("vqvae: decoder.conv_out.weight has %d output channels, want 3", m.dec.ConvOut.Cout)
	}
	o := core.NewOps(w.B)
	m.codebookT = o.Reshape(o.Transpose12(o.Reshape(m.q.embedding, 1, m.q.v, cv)), cv, m.q.v)
	if err := o.Err(); err != nil {
		return nil, fmt.Errorf("vqvae: %w", err)
	}
	m.cfg = Config{V: m.q.v, Cvae: cv, PatchNums: append([]int(nil), patchNums...), Phi: m.q.layout,
		PhiCount: len(m.q.phis), PhiRatio: m.q.ratio, Levels: len(m.dec.Levels), HasEncoder: m.enc != nil}
	return m, nil
}

// Config returns the architecture read from the checkpoint.
func (m *Model) Config() Config { return m.cfg }

// ImageSize is the side of decoded images: P * 2^(levels-1).
func (m *Model) ImageSize() int {
	return m.cfg.PatchNums[len(m.cfg.PatchNums)-1] << (m.cfg.Levels - 1)
}

// Encode is f = quant_conv(encoder(x)) for images x [B, 3, H, W] in [-1, 1].
func (m *Model) Encode(o *core.Ops, x *core.Tensor) *core.Tensor {
	if m.enc == nil {
		o.Fail("vqvae encode", fmt.Errorf("checkpoint has no encoder"))
		return nil
	}
	prev := o.SetScope("vqvae.encoder")
	e := m.enc.Encode(o, x)
	o.SetScope(prev)
	f := m.quantConv.Apply(o, e)
	o.Free(e)
	o.Tap("vae.f", f)
	return f
}

// Embed looks up token ids of one scale (B*pn*pn, row-major per image) and returns h [B, Cvae, pn, pn].
func (m *Model) Embed(o *core.Ops, ids []int, b, pn int) *core.Tensor {
	e := o.Embedding(m.q.embedding, ids) // [B*pn*pn, Cvae]
	h := o.Reshape(o.Transpose12(o.Reshape(e, b, pn*pn, m.cfg.Cvae)), b, m.cfg.Cvae, pn, pn)
	o.Free(e)
	return h
}

// SoftEmbed is the more_smooth embedding: probs [B*pn*pn, V] (rows sum to 1) times the codebook, returned
// as h [B, Cvae, pn, pn].
func (m *Model) SoftEmbed(o *core.Ops, probs *core.Tensor, b, pn int) *core.Tensor {
	e := o.Linear(probs, m.codebookT, nil) // [B*pn*pn, Cvae]
	h := o.Reshape(o.Transpose12(o.Reshape(e, b, pn*pn, m.cfg.Cvae)), b, m.cfg.Cvae, pn, pn)
	o.Free(e)
	return h
}

// AddScale adds scale si's embedding h [B, Cvae, pn, pn] to f_hat [B, Cvae, P, P] (official
// get_next_autoregressive_input): before the last scale h is bicubic-upsampled to P x P, passed through
// its Phi and added, and the next scale's input is f_hat area-downsampled to patch_nums[si+1]; at the last
// scale Phi(h) is added and next is nil. f_hat is not modified (a new tensor is returned).
func (m *Model) AddScale(o *core.Ops, si int, fhat, h *core.Tensor) (newFHat, next *core.Tensor) {
	pn := m.cfg.PatchNums
	p := pn[len(pn)-1]
	last := si == len(pn)-1
	up := h
	if !last {
		up = o.ResizeBicubic(h, p, p)
	}
	ph := m.q.applyPhi(o, si, up)
	if up != h {
		o.Free(up)
	}
	newFHat = o.Add(fhat, ph)
	o.Free(ph)
	if !last {
		next = o.ResizeArea(newFHat, pn[si+1], pn[si+1])
	}
	return newFHat, next
}

// ZeroFHat returns an all-zero f_hat [B, Cvae, P, P].
func (m *Model) ZeroFHat(o *core.Ops, b int) *core.Tensor {
	p := m.cfg.PatchNums[len(m.cfg.PatchNums)-1]
	s := core.Shape{b, m.cfg.Cvae, p, p}
	return o.Upload(core.HostTensor{Shape: s, Data: make([]float32, s.Numel())})
}

// Tokenize quantizes f [B, Cvae, P, P] scale by scale (official f_to_idxBl_or_fhat): ids[si] holds B*pn*pn
// token ids, row-major per image. When wantFHat is set, fhats[si] is the cumulative f_hat after scale si
// (the caller frees them).
func (m *Model) Tokenize(o *core.Ops, f *core.Tensor, wantFHat bool) (ids [][]int, fhats []*core.Tensor) {
	if !convnet.OKShape(o, f, 4) {
		return nil, nil
	}
	pn := m.cfg.PatchNums
	b, c, p := f.Dim(0), f.Dim(1), pn[len(pn)-1]
	if c != m.cfg.Cvae || f.Dim(2) != p || f.Dim(3) != p {
		o.Fail("tokenize", fmt.Errorf("f has shape %v, want [B, %d, %d, %d]", f.Shape(), m.cfg.Cvae, p, p))
		return nil, nil
	}
	rest := o.Axpby(1, f, 0, f)
	fhat := m.ZeroFHat(o, b)
	for si, n := range pn {
		last := si == len(pn)-1
		z := rest
		if !last {
			z = o.ResizeArea(rest, n, n)
		}
		zNC := o.Reshape(o.Transpose12(o.Reshape(z, b, c, n*n)), b*n*n, c)
		idx := o.NearestCode(zNC, m.q.embedding)
		if z != rest {
			o.Free(z)
		}
		o.Free(zNC)
		ids = append(ids, idx)
		h := m.Embed(o, idx, b, n)
		up := h
		if !last {
			up = o.ResizeBicubic(h, p, p)
			o.Free(h)
		}
		ph := m.q.applyPhi(o, si, up)
		o.Free(up)
		nf := o.Add(fhat, ph)
		nr := o.Axpby(1, rest, -1, ph)
		o.Free(ph, rest)
		if wantFHat {
			fhats = append(fhats, nf)
		} else {
			o.Free(fhat)
		}
		fhat, rest = nf, nr
		if o.Err() != nil {
			return nil, nil
		}
	}
	if !wantFHat {
		o.Free(fhat)
	}
	o.Free(rest)
	return ids, fhats
}

// FHatFromTokens rebuilds the cumulative f_hat after every scale from token ids (official embed_to_fhat
// with all_to_max_scale): the per-scale previews decode these. The caller frees them.
func (m *Model) FHatFromTokens(o *core.Ops, ids [][]int, b int) []*core.Tensor {
	if len(ids) > len(m.cfg.PatchNums) {
		o.Fail("vqvae", fmt.Errorf("%d scales of tokens, the model has %d", len(ids), len(m.cfg.PatchNums)))
		return nil
	}
	var out []*core.Tensor
	zero := m.ZeroFHat(o, b)
	fhat := zero
	for si, n := range m.cfg.PatchNums[:len(ids)] {
		h := m.Embed(o, ids[si], b, n)
		nf, next := m.AddScale(o, si, fhat, h)
		o.Free(h, next)
		out = append(out, nf)
		fhat = nf
	}
	o.Free(zero)
	return out
}

// Decode turns f_hat [B, Cvae, P, P] into images [B, 3, H, W] clamped to [-1, 1] (official fhat_to_img).
func (m *Model) Decode(o *core.Ops, fhat *core.Tensor) *core.Tensor {
	z := m.postQuantConv.Apply(o, fhat)
	o.Tap("vae.dec.post_quant_conv", z)
	prev := o.SetScope("vqvae.decoder")
	x := m.dec.Decode(o, z)
	o.SetScope(prev)
	o.Free(z)
	img := o.Clamp(x, -1, 1)
	o.Free(x)
	return img
}

// DecodePreview is a cheap preview of f_hat [B, Cvae, P, P]: f_hat area-downsampled to side x side, decoded
// (the decoder is fully convolutional, so the image is side * ImageSize()/P on a side) and
// bicubic-upsampled to [B, 3, ImageSize(), ImageSize()], clamped to [-1, 1] again because bicubic
// overshoots. It costs about (side/P)^2 of Decode. side >= P is Decode itself.
func (m *Model) DecodePreview(o *core.Ops, fhat *core.Tensor, side int) *core.Tensor {
	p := m.cfg.PatchNums[len(m.cfg.PatchNums)-1]
	if side >= p {
		return m.Decode(o, fhat)
	}
	if side < 1 {
		o.Fail("vqvae preview", fmt.Errorf("latent side %d: want >= 1", side))
		return nil
	}
	small := o.ResizeArea(fhat, side, side)
	img := m.Decode(o, small)
	o.Free(small)
	n := m.ImageSize()
	up := o.ResizeBicubic(img, n, n)
	o.Free(img)
	out := o.Clamp(up, -1, 1)
	o.Free(up)
	return out
}

// VarInput is the transformer's teacher-forcing input from the token maps of all scales (official
// idxBl_to_var_input): for each scale but the last, f_hat is accumulated as in generation and the next
// scale's area-downsampled f_hat is flattened to tokens. Returns [B, L-first_l, Cvae].
func (m *Model) VarInput(o *core.Ops, ids [][]int, b int) *core.Tensor {
	pn := m.cfg.PatchNums
	if len(ids) != len(pn) {
		o.Fail("vqvae", fmt.Errorf("%d scales of tokens, want %d", len(ids), len(pn)))
		return nil
	}
	var parts []*core.Tensor
	fhat := m.ZeroFHat(o, b)
	for si := 0; si < len(pn)-1; si++ {
		h := m.Embed(o, ids[si], b, pn[si])
		nf, next := m.AddScale(o, si, fhat, h)
		o.Free(h, fhat)
		fhat = nf
		n := pn[si+1]
		parts = append(parts, o.Transpose12(o.Reshape(next, b, m.cfg.Cvae, n*n)))
		o.Free(next)
	}
	o.Free(fhat)
	if len(parts) == 0 {
		o.Fail("vqvae", fmt.Errorf("a single scale has no teacher-forcing input"))
		return nil
	}
	out := o.Concat(1, parts...)
	o.Free(parts...)
	return out
}

// DecodeFLOPs counts Decode's arithmetic for one f_hat of latent side p: post_quant_conv and the decoder
// (convnet.Coder.DecodeFLOPs).
func (m *Model) DecodeFLOPs(p int) int64 {
	return m.postQuantConv.FLOPs(p, p) + m.dec.DecodeFLOPs(p, p)
}
