package flexvar

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/convnet"
)

// TokenizerConfig is what LoadTokenizer read from the checkpoint.
type TokenizerConfig struct {
	V, Cvae    int // codebook size and vector width
	Z          int // coder channels (quant_conv input, post_quant_conv output)
	Levels     int // resolutions of the decoder: an image side is 2^(Levels-1) tokens... times the grid
	HasEncoder bool
}

// Downsample is how many pixels one token covers on a side.
func (c TokenizerConfig) Downsample() int { return 1 << (c.Levels - 1) }

// Tokenizer is FlexVAR's VQ tokenizer (LlamaGen VQModel, models/vq_llama.py): a conv encoder and
// decoder (convnet, LlamaGen layout), 1x1 quant_conv / post_quant_conv, and a single-scale codebook whose
// vectors are always used l2-normalised. It is read-only after loading.
type Tokenizer struct {
	cfg           TokenizerConfig
	enc, dec      *convnet.Coder
	quantConv     *convnet.Conv
	postQuantConv convnet.Conv
	codebook      *core.Tensor // [V, Cvae], rows l2-normalised (F.normalize)
}

// LoadTokenizer builds the tokenizer from w (a LlamaGen VQModel state dict; FlexVAE.pth's 'model').
// The encoder is optional: a decoder-only checkpoint generates but cannot tokenize images.
func LoadTokenizer(w *core.Weights) (*Tokenizer, error) {
	t := &Tokenizer{}
	cb, err := w.Host("quantize.embedding.weight")
	if err != nil {
		return nil, fmt.Errorf("flexvar tokenizer: %w", err)
	}
	if len(cb.Shape) != 2 || cb.Shape[0] < 1 || cb.Shape[1] < 1 {
		return nil, fmt.Errorf("flexvar tokenizer: %w", &core.WeightError{Tensor: "quantize.embedding.weight", Msg: fmt.Sprintf("shape %v, want [V, Cvae]", cb.Shape)})
	}
	v, cv := cb.Shape[0], cb.Shape[1]
	norm := NormalizeRows(cb.Data, cv)
	if t.codebook, err = w.B.Upload(core.HostTensor{Shape: core.Shape{v, cv}, Data: norm}); err != nil {
		return nil, fmt.Errorf("flexvar tokenizer: codebook: %w", err)
	}
	// Usage statistics of training, not needed for inference.
	w.MarkUsed("quantize.codebook_used")
	bd := &convnet.Builder{W: w}
	pqs := w.Shape("post_quant_conv.weight")
	if len(pqs) != 4 {
		return nil, fmt.Errorf("flexvar tokenizer: %w", &core.WeightError{Tensor: "post_quant_conv.weight", Msg: fmt.Sprintf("shape %v, want [Z, %d, 1, 1]", pqs, cv)})
	}
	t.postQuantConv = bd.Conv("post_quant_conv", cv, 1, 1, [4]int{})
	z := t.postQuantConv.Cout
	t.dec = bd.LoadCoder("decoder", z, convnet.LlamaGen)
	if w.Has("encoder.conv_in.weight") {
		cin := 3
		if ws := w.Shape("encoder.conv_in.weight"); len(ws) == 4 {
			cin = ws[1]
		}
		t.enc = bd.LoadCoder("encoder", cin, convnet.LlamaGen)
		qc := bd.Conv("quant_conv", z, 1, 1, [4]int{})
		t.quantConv = &qc
		if bd.Err == nil && qc.Cout != cv {
			bd.Fail(&core.WeightError{Tensor: "quant_conv.weight", Msg: fmt.Sprintf("%d output channels, the codebook has %d", qc.Cout, cv)})
		}
	}
	if bd.Err != nil {
		return nil, fmt.Errorf("flexvar tokenizer: %w", bd.Err)
	}
	if t.dec.ConvOut.Cout != 3 {
		return nil, fmt.Errorf("flexvar tokenizer: decoder.conv_out.weight has %d output channels, want 3", t.dec.ConvOut.Cout)
	}
	t.cfg = TokenizerConfig{V: v, Cvae: cv, Z: z, Levels: len(t.dec.Levels), HasEncoder: t.enc != nil}
	return t, nil
}

// Config returns the architecture read from the checkpoint.
func (t *Tokenizer) Config() TokenizerConfig { return t.cfg }

// Codebook is the l2-normalised codebook [V, Cvae].
func (t *Tokenizer) Codebook() *core.Tensor { return t.codebook }

// NormalizeRows is F.normalize(x, dim=-1) of rows of width c: x / max(|x|, 1e-12), the norm taken in
// float64.
func NormalizeRows(x []float32, c int) []float32 {
	out := make([]float32, len(x))
	for r := 0; r+c <= len(x); r += c {
		var ss float64
		for _, v := range x[r : r+c] {
			ss += float64(v) * float64(v)
		}
		n := float32(max(math.Sqrt(ss), 1e-12))
		for j, v := range x[r : r+c] {
			out[r+j] = v / n
		}
	}
	return out
}

// Embed looks up the normalised codes of one step's ids (B*h*w, row-major per image): [B, Cvae, h, w].
func (t *Tokenizer) Embed(o *core.Ops, ids []int, b int, g Grid) *core.Tensor {
	e := o.Embedding(t.codebook, ids) // [B*h*w, Cvae]
	x := o.Reshape(o.Transpose12(o.Reshape(e, b, g.N(), t.cfg.Cvae)), b, t.cfg.Cvae, g.H, g.W)
	o.Free(e)
	return x
}

// Decode is decode_code: the codes of ids (B*h*w) through post_quant_conv and the decoder, [B, 3,
// h*f, w*f] in about [-1, 1], not clamped (f = Downsample()).
func (t *Tokenizer) Decode(o *core.Ops, ids []int, b int, g Grid) *core.Tensor {
	code := t.Embed(o, ids, b, g)
	z := t.postQuantConv.Apply(o, code)
	o.Free(code)
	o.Tap("vae.dec.post_quant_conv", z)
	prev := o.SetScope("flexvar.decoder")
	x := t.dec.Decode(o, z)
	o.SetScope(prev)
	o.Free(z)
	return x
}

// Encode is encode_conti: quant_conv(encoder(x)) for images x [B, 3, H, W] in [-1, 1], the continuous
// latent h [B, Cvae, H/f, W/f] that Tokenize quantises at every step.
func (t *Tokenizer) Encode(o *core.Ops, x *core.Tensor) *core.Tensor {
	if t.enc == nil {
		o.Fail("flexvar encode", fmt.Errorf("the tokenizer checkpoint has no encoder"))
		return nil
	}
	prev := o.SetScope("flexvar.encoder")
	e := t.enc.Encode(o, x)
	o.SetScope(prev)
	h := t.quantConv.Apply(o, e)
	o.Free(e)
	return h
}

// Quantize is the tokens of latent h [B, Cvae, H, W] at grid g, each step on its own (official
// encode_var_wo_firstL): z = normalize(area(h, g)) per position; the nearest normalised code. Returns
// B*g.N() ids, row-major per image.
func (t *Tokenizer) Quantize(o *core.Ops, h *core.Tensor, g Grid) []int {
	if !convnet.OKShape(o, h, 4) {
		return nil
	}
	b, c := h.Dim(0), h.Dim(1)
	if c != t.cfg.Cvae {
		o.Fail("flexvar quantize", fmt.Errorf("latent has %d channels, the codebook %d", c, t.cfg.Cvae))
		return nil
	}
	z := h
	if h.Dim(2) != g.H || h.Dim(3) != g.W {
		z = o.ResizeArea(h, g.H, g.W)
	}
	zBLC := o.Transpose12(o.Reshape(z, b, c, g.N()))
	zn := o.NormalizeHeads(zBLC, 1, nil)
	ids := o.NearestCode(o.Reshape(zn, b*g.N(), c), t.codebook)
	if z != h {
		o.Free(z)
	}
	o.Free(zBLC, zn)
	return ids
}

// NextInput is the transformer input for the step after one of grid g from its ids: the normalised
// codes bicubic-resized to grid next, as tokens [B, next.N(), Cvae].
func (t *Tokenizer) NextInput(o *core.Ops, ids []int, b int, g, next Grid) *core.Tensor {
	e := t.Embed(o, ids, b, g)
	up := o.ResizeBicubic(e, next.H, next.W)
	o.Free(e)
	x := o.Transpose12(o.Reshape(up, b, t.cfg.Cvae, next.N()))
	o.Free(up)
	return x
}

// TeacherInput is the teacher-forcing input of a schedule from per-step ids (VARTrainer
// encode_var_wo_firstL's x_BLCv_wo_first_l): NextInput of every step but the last, concatenated,
// [B, L - 1, Cvae].
func (t *Tokenizer) TeacherInput(o *core.Ops, ids [][]int, b int, sched []Grid) *core.Tensor {
	if len(ids) != len(sched) || len(sched) < 2 {
		o.Fail("flexvar", fmt.Errorf("%d steps of tokens for a schedule of %d (need >= 2)", len(ids), len(sched)))
		return nil
	}
	var parts []*core.Tensor
	for k := 0; k+1 < len(sched); k++ {
		parts = append(parts, t.NextInput(o, ids[k], b, sched[k], sched[k+1]))
	}
	out := o.Concat(1, parts...)
	o.Free(parts...)
	return out
}

// DecodeFLOPs counts Decode's arithmetic for one image of grid g: post_quant_conv and the decoder
// (convnet.Coder.DecodeFLOPs).
func (t *Tokenizer) DecodeFLOPs(g Grid) int64 {
	return t.postQuantConv.FLOPs(g.H, g.W) + t.dec.DecodeFLOPs(g.H, g.W)
}
