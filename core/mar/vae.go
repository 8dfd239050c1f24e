package mar

import (
	"fmt"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/convnet"
)

// ScaleFactor is MAR's latent scale for the released KL-16 VAE (the default of Pipeline.Scale): tokens are
// latents times 0.2325 (vae_scale in
// sample_tokens' caller: vae.decode(tokens / 0.2325)).
const ScaleFactor = 0.2325

// VAEConfig is what LoadVAE read from the checkpoint.
type VAEConfig struct {
	Embed      int // latent channels (embed_dim)
	Z          int // coder channels (z_channels)
	Levels     int // decoder resolutions: one latent pixel covers 2^(Levels-1) image pixels
	HasEncoder bool
}

// Downsample is how many pixels one latent pixel covers on a side (16 for KL-16).
func (c VAEConfig) Downsample() int { return 1 << (c.Levels - 1) }

// VAE is the LDM AutoencoderKL of MAR (models/vae.py): a taming-layout conv encoder and decoder, the
// 1x1 quant_conv to the Gaussian's mean and log-variance, and post_quant_conv. Read-only after loading.
type VAE struct {
	cfg           VAEConfig
	enc, dec      *convnet.Coder
	quantConv     *convnet.Conv
	postQuantConv convnet.Conv
}

// LoadVAE builds the VAE from w (the KL-16 release's {'model': state_dict}). The encoder is optional.
func LoadVAE(w *core.Weights) (*VAE, error) {
	v := &VAE{}
	// The KL-16 release keeps its training losses (LPIPS, discriminator) under loss.*: not the VAE's.
	for _, n := range w.Src.Names() {
		if strings.HasPrefix(n, "loss.") {
			w.MarkUsed(n)
		}
	}
	bd := &convnet.Builder{W: w}
	ps := w.Shape("post_quant_conv.weight")
	if len(ps) != 4 || ps[2] != 1 || ps[3] != 1 {
		return nil, fmt.Errorf("mar vae: %w", &core.WeightError{Tensor: "post_quant_conv.weight", Msg: fmt.Sprintf("shape %v, want [z, embed, 1, 1]", ps)})
	}
	v.postQuantConv = bd.Conv("post_quant_conv", ps[1], 1, 1, [4]int{})
	v.dec = bd.LoadCoder("decoder", v.postQuantConv.Cout, convnet.Taming)
	if w.Has("encoder.conv_in.weight") {
		v.enc = bd.LoadCoder("encoder", 3, convnet.Taming)
		qs := w.Shape("quant_conv.weight")
		if len(qs) == 4 {
			qc := bd.Conv("quant_conv", qs[1], 1, 1, [4]int{})
			v.quantConv = &qc
			if bd.Err == nil && qc.Cout != 2*ps[1] {
				bd.Fail(&core.WeightError{Tensor: "quant_conv.weight", Msg: fmt.Sprintf("%d outputs, want 2 x %d (mean, log-variance)", qc.Cout, ps[1])})
			}
		} else {
			bd.Fail(&core.WeightError{Tensor: "quant_conv.weight", Msg: fmt.Sprintf("shape %v, want [2*embed, z, 1, 1]", qs)})
		}
	}
	if bd.Err != nil {
		return nil, fmt.Errorf("mar vae: %w", bd.Err)
	}
	if v.dec.ConvOut.Cout != 3 {
		return nil, fmt.Errorf("mar vae: decoder.conv_out.weight has %d output channels, want 3", v.dec.ConvOut.Cout)
	}
	v.cfg = VAEConfig{Embed: ps[1], Z: v.postQuantConv.Cout, Levels: len(v.dec.Levels), HasEncoder: v.enc != nil}
	return v, nil
}

// Config returns the architecture read from the checkpoint.
func (v *VAE) Config() VAEConfig { return v.cfg }

// Decode is vae.decode(z): post_quant_conv then the decoder, for latents z [B, Embed, h, w] (already
// divided by ScaleFactor): [B, 3, h*f, w*f] in about [-1, 1], not clamped.
func (v *VAE) Decode(o *core.Ops, z *core.Tensor) *core.Tensor {
	h := v.postQuantConv.Apply(o, z)
	prev := o.SetScope("mar.vae.decoder")
	x := v.dec.Decode(o, h)
	o.SetScope(prev)
	o.Free(h)
	return x
}

// Moments is quant_conv(encoder(x)) for images x [B, 3, H, W] in [-1, 1]: [B, 2*Embed, H/f, W/f], the
// Gaussian's mean then its log-variance.
func (v *VAE) Moments(o *core.Ops, x *core.Tensor) *core.Tensor {
	if v.enc == nil {
		o.Fail("mar vae encode", fmt.Errorf("the VAE checkpoint has no encoder"))
		return nil
	}
	prev := o.SetScope("mar.vae.encoder")
	e := v.enc.Encode(o, x)
	o.SetScope(prev)
	m := v.quantConv.Apply(o, e)
	o.Free(e)
	return m
}

// DecodeFLOPs counts one Decode of an h x w latent.
func (v *VAE) DecodeFLOPs(h, w int) int64 {
	return v.postQuantConv.FLOPs(h, w) + v.dec.DecodeFLOPs(h, w)
}
