package rq

import (
	"fmt"
	"slices"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/convnet"
)

// Codes is a map of residual codes, (b, h, w, d) row-major: RQVAE.get_codes' (B, h, w, D) tensor, and what
// RQTransformer.sample fills in.
type Codes struct {
	B, H, W, D int
	IDs        []int
}

// NewCodes is an all-zero code map (the official sampler's partial_sample = zeros).
func NewCodes(b, h, w, d int) Codes {
	return Codes{B: b, H: h, W: w, D: d, IDs: make([]int, b*h*w*d)}
}

// At is the index in IDs of image b's code at raster position pos and depth d.
func (c Codes) At(b, pos, d int) int { return (b*c.H*c.W+pos)*c.D + d }

// Image returns image b's codes, (h, w, d) row-major.
func (c Codes) Image(b int) []int {
	n := c.H * c.W * c.D
	return c.IDs[b*n : (b+1)*n]
}

func (c Codes) check(v int) error {
	if c.B < 1 || c.H < 1 || c.W < 1 || c.D < 1 || len(c.IDs) != c.B*c.H*c.W*c.D {
		return fmt.Errorf("codes: %d ids for a (%d, %d, %d, %d) map", len(c.IDs), c.B, c.H, c.W, c.D)
	}
	for i, id := range c.IDs {
		if id < 0 || id >= v {
			return fmt.Errorf("codes: id %d at %d outside 0..%d", id, i, v-1)
		}
	}
	return nil
}

// VAE is the RQ-VAE (rqvae/models/rqvae/rqvae.py): the taming-layout encoder and decoder (GroupNorm 32,
// eps 1e-6; attention at the configured resolutions), the 1x1 quant_conv and post_quant_conv, and the
// residual quantizer with one codebook shared by every depth. Read-only after loading.
type VAE struct {
	cfg           VAEConfig
	enc, dec      *convnet.Coder
	quantConv     *convnet.Conv
	postQuantConv convnet.Conv
	// embed is [NEmbed+1, Embed]: the codebook's rows 0..NEmbed-1, then a row of zeros (NoCode) that
	// stands for a position not generated yet in previews. The checkpoint's own padding row (padding_idx,
	// never selected) is not used.
	embed *core.Tensor
	// search is [NEmbed, Embed], the rows the nearest-code search runs over; only with an encoder.
	search *core.Tensor
}

// NoCode is the code id whose embedding is zero: the preview's "nothing here yet" (one past the codebook).
func (v *VAE) NoCode() int { return v.cfg.NEmbed }

// LoadVAE builds the RQ-VAE from w (stage1's state_dict). depth is the number of code depths (0: the
// number of quantizer.codebooks.N.weight tensors). With the shared codebook the state dict lists the
// codebook once per depth: the copies must be identical, and may be absent (a converted checkpoint keeps
// one). The quantizer's EMA buffers are training state and are skipped. The encoder is optional.
func LoadVAE(w *core.Weights, depth int) (*VAE, error) {
	v, err := loadVAE(w, depth)
	if err != nil {
		return nil, fmt.Errorf("rq vae: %w", err)
	}
	if err := w.CheckAllUsed("an RQ-VAE checkpoint"); err != nil {
		return nil, fmt.Errorf("rq vae: %w", err)
	}
	return v, nil
}

// isEMABuffer reports the training buffers of VQEmbedding (ema=True): skipped, never used at inference.
func isEMABuffer(name string) bool {
	return strings.HasPrefix(name, "quantizer.codebooks.") &&
		(strings.HasSuffix(name, ".cluster_size_ema") || strings.HasSuffix(name, ".embed_ema"))
}

func loadVAE(w *core.Weights, depth int) (*VAE, error) {
	for _, n := range w.Src.Names() {
		if isEMABuffer(n) {
			w.MarkUsed(n)
		}
	}
	v := &VAE{}
	ps, err := shapeOf(w.Src, "post_quant_conv.weight", 4)
	if err != nil {
		return nil, err
	}
	if ps[2] != 1 || ps[3] != 1 {
		return nil, &core.WeightError{Tensor: "post_quant_conv.weight", Msg: fmt.Sprintf("shape %v, want [z, embed, 1, 1]", ps)}
	}
	E := ps[1]
	bd := &convnet.Builder{W: w}
	v.postQuantConv = bd.Conv("post_quant_conv", E, 1, 1, [4]int{})
	v.dec = bd.LoadCoder("decoder", v.postQuantConv.Cout, convnet.Taming)
	in := 0
	if w.Has("encoder.conv_in.weight") {
		cs, err := shapeOf(w.Src, "encoder.conv_in.weight", 4)
		if err != nil {
			return nil, err
		}
		in = cs[1]
		v.enc = bd.LoadCoder("encoder", in, convnet.Taming)
		if bd.Err == nil && v.enc.ConvOut.Cout != v.postQuantConv.Cout {
			return nil, &core.WeightError{Tensor: "encoder.conv_out.weight", Msg: fmt.Sprintf("%d output channels, want z_channels %d (double_z is not implemented)",
				v.enc.ConvOut.Cout, v.postQuantConv.Cout)}
		}
		qc := bd.Conv("quant_conv", v.postQuantConv.Cout, 1, 1, [4]int{})
		v.quantConv = &qc
		if bd.Err == nil && qc.Cout != E {
			return nil, &core.WeightError{Tensor: "quant_conv.weight", Msg: fmt.Sprintf("%d output channels, want embed_dim %d", qc.Cout, E)}
		}
	}
	if bd.Err != nil {
		return nil, bd.Err
	}
	if v.dec.ConvOut.Cout != 3 {
		return nil, &core.WeightError{Tensor: "decoder.conv_out.weight", Msg: fmt.Sprintf("%d output channels, want 3", v.dec.ConvOut.Cout)}
	}
	if v.enc != nil && len(v.enc.Levels) != len(v.dec.Levels) {
		return nil, fmt.Errorf("encoder has %d resolutions, decoder %d", len(v.enc.Levels), len(v.dec.Levels))
	}

	// The residual quantizer's shared codebook.
	const cb0 = "quantizer.codebooks.0.weight"
	cs, err := shapeOf(w.Src, cb0, 2)
	if err != nil {
		return nil, err
	}
	if cs[1] != E || cs[0] < 2 {
		return nil, &core.WeightError{Tensor: cb0, Msg: fmt.Sprintf("shape %v, want [n_embed + 1, %d] (the last row is the padding row)", cs, E)}
	}
	book, err := w.Host(cb0, cs...)
	if err != nil {
		return nil, err
	}
	n := 1
	for w.Has(fmt.Sprintf("quantizer.codebooks.%d.weight", n)) {
		n++
	}
	switch {
	case depth == 0:
		depth = n
	case n != 1 && n != depth:
		return nil, &core.WeightError{Tensor: fmt.Sprintf("quantizer.codebooks.%d.weight", n-1),
			Msg: fmt.Sprintf("%d codebooks, want one per depth (%d)", n, depth)}
	}
	for d := 1; d < n; d++ {
		name := fmt.Sprintf("quantizer.codebooks.%d.weight", d)
		h, err := w.Host(name, cs...)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(h.Data, book.Data) {
			return nil, &core.WeightError{Tensor: name, Msg: "differs from quantizer.codebooks.0.weight: separate codebooks per depth (shared_codebook false) are not implemented"}
		}
	}
	N := cs[0] - 1
	l := core.NewLoader(w)
	table := make([]float32, (N+1)*E) // rows 0..N-1, then zeros
	copy(table, book.Data[:N*E])
	v.embed = l.Upload(core.HostTensor{Shape: core.Shape{N + 1, E}, Data: table})
	if v.enc != nil {
		v.search = l.Upload(core.HostTensor{Shape: core.Shape{N, E}, Data: table[:N*E]})
	}
	if l.Err() != nil {
		return nil, l.Err()
	}
	v.cfg = VAEConfig{Embed: E, NEmbed: N, Depth: depth, Z: v.postQuantConv.Cout, Levels: len(v.dec.Levels), In: in}
	return v, nil
}

// Config returns the architecture read from the checkpoint.
func (v *VAE) Config() VAEConfig { return v.cfg }

// HasEncoder reports whether the checkpoint had the encoder (images can be encoded).
func (v *VAE) HasEncoder() bool { return v.enc != nil }

// Encoder is vae.encoder(x) for images x [B, In, H, W] in [-1, 1]: [B, z, H/f, W/f] (NCHW), before
// quant_conv.
func (v *VAE) Encoder(o *core.Ops, x *core.Tensor) *core.Tensor {
	if v.enc == nil {
		o.Fail("rq vae encode", fmt.Errorf("the RQ-VAE checkpoint has no encoder"))
		return nil
	}
	prev := o.SetScope("rq.vae.encoder")
	e := v.enc.Encode(o, x)
	o.SetScope(prev)
	return e
}

// Encode is vae.encode(x): quant_conv(encoder(x)) as NHWC, [B, H/f, W/f, Embed].
func (v *VAE) Encode(o *core.Ops, x *core.Tensor) *core.Tensor {
	e := v.Encoder(o, x)
	o.Tap("rq.vae.encoder_out", e)
	if e == nil {
		return nil
	}
	z := v.quantConv.Apply(o, e)
	o.Free(e)
	return toNHWC(o, z)
}

// toNHWC turns [B, C, h, w] into [B, h, w, C] (and frees x).
func toNHWC(o *core.Ops, x *core.Tensor) *core.Tensor {
	if !convnet.OKShape(o, x, 4) {
		return nil
	}
	s := x.Shape()
	t := o.Transpose12(o.Reshape(x, s[0], s[1], s[2]*s[3]))
	o.Free(x)
	return o.Reshape(t, s[0], s[2], s[3], s[1])
}

// toNCHW turns [B, h, w, C] into [B, C, h, w] (x is not freed).
func toNCHW(o *core.Ops, x *core.Tensor) *core.Tensor {
	if !convnet.OKShape(o, x, 4) {
		return nil
	}
	s := x.Shape()
	t := o.Transpose12(o.Reshape(x, s[0], s[1]*s[2], s[3]))
	return o.Reshape(t, s[0], s[3], s[1], s[2])
}

// Quantized is the residual quantization of a latent map.
type Quantized struct {
	Codes Codes
	// Cumsum[d] is the sum of the selected code vectors of depths 0..d, [B, h, w, Embed]
	// (quantize()'s quant_list); Cumsum[D-1] is the quantized latent.
	Cumsum []*core.Tensor
}

// Free releases the partial sums.
func (q *Quantized) Free(o *core.Ops) {
	o.Free(q.Cumsum...)
	q.Cumsum = nil
}

// Quantize is RQBottleneck.quantize of z [B, h, w, Embed] (NHWC, code shape = latent shape): at each depth
// the nearest codebook row to the residual (|r|^2 + |e|^2 - 2 r.e over rows 0..n_embed-1, the first on
// ties), then r -= e[code].
func (v *VAE) Quantize(o *core.Ops, z *core.Tensor) Quantized {
	var q Quantized
	if !convnet.OKShape(o, z, 4) {
		return q
	}
	if v.search == nil {
		o.Fail("rq quantize", fmt.Errorf("the RQ-VAE checkpoint has no encoder, so no quantizer search table"))
		return q
	}
	s := z.Shape()
	B, h, w, E, D := s[0], s[1], s[2], s[3], v.cfg.Depth
	if E != v.cfg.Embed {
		o.Fail("rq quantize", fmt.Errorf("latent of %d channels, want %d", E, v.cfg.Embed))
		return q
	}
	n := B * h * w
	q.Codes = NewCodes(B, h, w, D)
	r := o.Reshape(z, n, E)
	var agg *core.Tensor
	for d := 0; d < D; d++ {
		ids := o.NearestCode(r, v.search)
		if o.Err() != nil {
			break
		}
		for i, id := range ids {
			q.Codes.IDs[i*D+d] = id
		}
		e := o.Embedding(v.embed, ids)
		r2 := o.Axpby(1, r, -1, e)
		if d > 0 {
			o.Free(r)
		}
		r = r2
		if agg == nil {
			agg = e
		} else {
			a := o.Add(agg, e)
			o.Free(e)
			agg = a
		}
		q.Cumsum = append(q.Cumsum, o.Reshape(agg, B, h, w, E))
	}
	o.Free(r)
	return q
}

// Codes is vae.get_codes(x): the residual codes of images x [B, In, H, W].
func (v *VAE) Codes(o *core.Ops, x *core.Tensor) Codes {
	z := v.Encode(o, x)
	if z == nil {
		return Codes{}
	}
	q := v.Quantize(o, z)
	o.Free(z)
	q.Free(o)
	return q.Codes
}

// CodeEmbeddings is get_code_emb_with_depth(codes): the code vectors, [B, h, w, D, Embed] (the id NoCode
// gives zeros).
func (v *VAE) CodeEmbeddings(o *core.Ops, c Codes) *core.Tensor {
	if err := c.check(v.cfg.NEmbed + 1); err != nil {
		o.Fail("rq code embeddings", err)
		return nil
	}
	return o.Reshape(o.Embedding(v.embed, c.IDs), c.B, c.H, c.W, c.D, v.cfg.Embed)
}

// SumMode says which depths a partial decode adds up (decode_partial_code's decode_type).
type SumMode int

const (
	// SumFirst adds depths 0..k ('add'): the coarse-to-fine reconstructions.
	SumFirst SumMode = iota
	// SumOnly takes depth k alone ('select').
	SumOnly
)

// Latent is the quantized latent of codes, [B, h, w, Embed] NHWC: embed_code (all depths), or
// embed_partial_code for depth k with the given mode.
func (v *VAE) Latent(o *core.Ops, c Codes, k int, mode SumMode) *core.Tensor {
	if k < 0 || k >= c.D {
		o.Fail("rq latent", fmt.Errorf("depth %d outside 0..%d", k, c.D-1))
		return nil
	}
	emb := v.CodeEmbeddings(o, c)
	if emb == nil {
		return nil
	}
	E := v.cfg.Embed
	n := c.B * c.H * c.W
	flat := o.Reshape(emb, n, c.D*E)
	var sum *core.Tensor
	if mode == SumOnly {
		sum = o.SliceLast(flat, k*E, E)
	} else {
		// cat(embeds[:k+1], -2).sum(-2), added depth by depth.
		sum = o.SliceLast(flat, 0, E)
		for d := 1; d <= k; d++ {
			e := o.SliceLast(flat, d*E, E)
			s := o.Add(sum, e)
			o.Free(sum, e)
			sum = s
		}
	}
	o.Free(emb)
	return o.Reshape(sum, c.B, c.H, c.W, E)
}

// Decode is vae.decode(z) for a quantized latent z [B, h, w, Embed] (NHWC): post_quant_conv then the
// decoder, [B, 3, h*f, w*f] in about [-1, 1], not clamped.
func (v *VAE) Decode(o *core.Ops, z *core.Tensor) *core.Tensor {
	x := toNCHW(o, z)
	if x == nil {
		return nil
	}
	h := v.postQuantConv.Apply(o, x)
	o.Free(x)
	prev := o.SetScope("rq.vae.decoder")
	img := v.dec.Decode(o, h)
	o.SetScope(prev)
	o.Free(h)
	return img
}

// DecodeCodes is vae.decode_code(codes): the images of every depth's codes summed.
func (v *VAE) DecodeCodes(o *core.Ops, c Codes) *core.Tensor {
	return v.DecodePartial(o, c, c.D-1, SumFirst)
}

// DecodePartial is vae.decode_partial_code(codes, k, decode_type): the images of depths 0..k (SumFirst,
// 'add') or of depth k alone (SumOnly, 'select').
func (v *VAE) DecodePartial(o *core.Ops, c Codes, k int, mode SumMode) *core.Tensor {
	z := v.Latent(o, c, k, mode)
	if z == nil {
		return nil
	}
	img := v.Decode(o, z)
	o.Free(z)
	return img
}

// DecodeFLOPs counts one decode of an h x w code map.
func (v *VAE) DecodeFLOPs(h, w int) int64 {
	return v.postQuantConv.FLOPs(h, w) + v.dec.DecodeFLOPs(h, w)
}
