package bench

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/varmodel"
)

// ScaleQuality is how close the cheap previews of one scale are to its full-decode preview.
type ScaleQuality struct {
	Scale int `json:"scale"` // 0-based
	PN    int `json:"pn"`
	// LinearPSNR and FastPSNR are in dB against varmodel.PreviewFull of the same f_hat, pixels in [0, 1],
	// from the squared error pooled over all images (capped at MaxPSNR: identical).
	LinearPSNR float64 `json:"linear_psnr_db"`
	FastPSNR   float64 `json:"fast_psnr_db"`
}

// PreviewQuality measures the linear and fast previews against the full-decode ones on p's own images:
// each request is generated with previews off, every scale's f_hat is rebuilt from the sampled tokens
// (vqvae.FHatFromTokens) and rendered in the three modes. It reports every scale but the last (whose
// preview is the final image in every mode). p needs a linear map.
func PreviewQuality(ctx context.Context, b core.Backend, p *varmodel.Pipeline, reqs []varmodel.Request) ([]ScaleQuality, error) {
	if p.LinearPreview == nil {
		return nil, errors.New("bench: preview quality: the model has no linear preview map")
	}
	if len(reqs) == 0 {
		return nil, errors.New("bench: preview quality: no requests")
	}
	pn := p.VAR.Config().PatchNums
	k := len(pn)
	// Squared errors against the full previews and value counts, per scale.
	seLin, seFast, n := make([]float64, k-1), make([]float64, k-1), make([]int, k-1)
	for i, req := range reqs {
		req.Previews = varmodel.PreviewNone
		res, err := p.Generate(ctx, b, req, nil)
		if err != nil {
			return nil, fmt.Errorf("bench: preview quality: request %d: %w", i, err)
		}
		o := core.NewOps(b)
		fhats := p.VAE.FHatFromTokens(o, res.Tokens, len(req.Labels))
		err = func() error {
			defer o.Free(fhats...)
			for si := 0; si < k-1; si++ {
				var imgs [3]core.HostTensor
				for j, m := range []varmodel.PreviewMode{varmodel.PreviewFull, varmodel.PreviewLinear, varmodel.PreviewFast} {
					img, err := p.Preview(o, fhats[si], si, m)
					if err == nil {
						err = o.Err()
					}
					if err != nil {
						return err
					}
					imgs[j] = img
				}
				seLin[si] += core.SquaredError(imgs[0].Data, imgs[1].Data)
				seFast[si] += core.SquaredError(imgs[0].Data, imgs[2].Data)
				n[si] += len(imgs[0].Data)
			}
			return nil
		}()
		if err != nil {
			return nil, fmt.Errorf("bench: preview quality: request %d: %w", i, err)
		}
	}
	out := make([]ScaleQuality, k-1)
	for si := range out {
		out[si] = ScaleQuality{Scale: si, PN: pn[si], LinearPSNR: psnrOf(seLin[si], n[si]), FastPSNR: psnrOf(seFast[si], n[si])}
	}
	return out, nil
}

// MaxPSNR stands for identical images (whose PSNR is infinite, which JSON cannot encode).
const MaxPSNR = 100

// psnrOf is the PSNR of a summed squared error over n values in [0, 1].
func psnrOf(se float64, n int) float64 {
	if se == 0 {
		return MaxPSNR
	}
	return min(10*math.Log10(float64(n)/se), MaxPSNR)
}
