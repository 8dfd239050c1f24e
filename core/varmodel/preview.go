package varmodel

import (
	"context"
	"fmt"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/vqvae"
)

// EffectivePreviews is the mode Run renders for a requested one: PreviewLinear becomes PreviewFast for a
// model without a fitted map (official checkpoints opened directly, directories converted without one).
func (p *Pipeline) EffectivePreviews(m PreviewMode) PreviewMode {
	if m == PreviewLinear && p.LinearPreview == nil {
		return PreviewFast
	}
	return m
}

// InteractivePreviews is the package's InteractivePreviews for this model.
func (p *Pipeline) InteractivePreviews() PreviewMode {
	return InteractivePreviews(p.VAE.ImageSize(), p.LinearPreview != nil)
}

// Preview renders scale si's preview of fhat [B, Cvae, P, P] (the f_hat accumulated after scale si) as
// mode says, after EffectivePreviews: [B, 3, H, W] in [0, 1]. The last scale's preview is the full
// decode in every mode, so that it is the final image.
func (p *Pipeline) Preview(o *core.Ops, fhat *core.Tensor, si int, mode PreviewMode) (core.HostTensor, error) {
	pn := p.VAR.Config().PatchNums
	if si < 0 || si >= len(pn) {
		return core.HostTensor{}, fmt.Errorf("preview of scale %d: the model has scales 0..%d", si, len(pn)-1)
	}
	if si == len(pn)-1 {
		mode = PreviewFull
	}
	switch p.EffectivePreviews(mode) {
	case PreviewFull:
		return p.decode(o, fhat), nil
	case PreviewFast:
		return p.download(o, p.VAE.DecodePreview(o, fhat, pn[si])), nil
	case PreviewLinear:
		h := o.Download(fhat)
		if err := o.Err(); err != nil {
			return core.HostTensor{}, err
		}
		return p.LinearPreview.Apply(h, p.VAE.ImageSize())
	}
	return core.HostTensor{}, fmt.Errorf("preview of scale %d: mode %v renders nothing", si, mode)
}

// FitLinearPreview fits the model's PreviewLinear map (vqvae.PreviewFit) to its own images: each request
// is generated (its Previews are ignored), the f_hat after every scale is rebuilt from the sampled tokens
// (vqvae.FHatFromTokens) and decoded at full quality, and every latent pixel of every scale becomes one
// least-squares sample: the previews it must imitate are the full decodes of exactly these f_hats.
// onImage, when set, is called after each request with the number done. It returns the map and its RMS
// residual at the latent resolution (image units, [0, 1]).
func (p *Pipeline) FitLinearPreview(ctx context.Context, b core.Backend, reqs []Request, onImage func(done int)) (*vqvae.LinearPreview, float64, error) {
	if len(reqs) == 0 {
		return nil, 0, fmt.Errorf("linear preview fit: no requests")
	}
	fit := vqvae.NewPreviewFit(p.VAE.Config().Cvae)
	for i, req := range reqs {
		req.Previews = PreviewNone
		res, err := p.Generate(ctx, b, req, nil)
		if err != nil {
			return nil, 0, fmt.Errorf("linear preview fit: request %d: %w", i, err)
		}
		o := core.NewOps(b)
		fhats := p.VAE.FHatFromTokens(o, res.Tokens, len(req.Labels))
		for _, fh := range fhats {
			if err := ctx.Err(); err != nil {
				o.Free(fhats...)
				return nil, 0, err
			}
			h := o.Download(fh)
			img := p.decode(o, fh)
			if err := o.Err(); err != nil {
				o.Free(fhats...)
				return nil, 0, fmt.Errorf("linear preview fit: request %d: %w", i, err)
			}
			if err := fit.Add(h, img); err != nil {
				o.Free(fhats...)
				return nil, 0, err
			}
		}
		o.Free(fhats...)
		if onImage != nil {
			onImage(i + 1)
		}
	}
	return fit.Solve()
}
