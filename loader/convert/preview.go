package convert

import (
	"encoding/json"
	"fmt"

	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/vqvae"
	"github.com/webvar/webvar/weights"
)

// MetaLinearPreview is the manifest meta key of the model's fitted latent-to-RGB preview map
// (varmodel.PreviewLinear, vqvae.LinearPreview): a JSON array of 3 arrays (R, G, B) of Cvae+1 numbers
// each, the weights of the Cvae latent channels and then the bias, mapping f_hat to pixel values in
// [0, 1]. `webvar convert -preview-fit N` computes it.
const MetaLinearPreview = "preview.linear_rgb"

// LinearPreviewMeta encodes a map as its meta value.
func LinearPreviewMeta(lp *vqvae.LinearPreview) (string, error) {
	k := lp.Cvae + 1
	if len(lp.W_3K) != 3*k {
		return "", fmt.Errorf("linear preview: %d numbers for %d latent channels", len(lp.W_3K), lp.Cvae)
	}
	rows := [][]float32{lp.W_3K[:k], lp.W_3K[k : 2*k], lp.W_3K[2*k:]}
	data, err := json.Marshal(rows)
	return string(data), err
}

// LinearPreviewOf reads the preview map from a manifest's meta for a VQVAE with cvae latent channels:
// nil without one (previews then fall back to PreviewFast), an error naming the key when it is malformed.
func LinearPreviewOf(m *weights.Manifest, cvae int) (*vqvae.LinearPreview, error) {
	raw, ok := m.Meta[MetaLinearPreview]
	if !ok {
		return nil, nil
	}
	var rows [][]float32
	if err := json.Unmarshal([]byte(raw), &rows); err != nil {
		return nil, fmt.Errorf("weights manifest: meta %s: %w", MetaLinearPreview, err)
	}
	if len(rows) != 3 {
		return nil, fmt.Errorf("weights manifest: meta %s has %d rows, want 3 (R, G, B)", MetaLinearPreview, len(rows))
	}
	var w []float32
	for i, r := range rows {
		if len(r) != cvae+1 {
			return nil, fmt.Errorf("weights manifest: meta %s row %d has %d numbers, want %d (the VQVAE's %d latent channels and a bias)",
				MetaLinearPreview, i, len(r), cvae+1, cvae)
		}
		w = append(w, r...)
	}
	lp, err := vqvae.NewLinearPreview(cvae, w)
	if err != nil {
		return nil, fmt.Errorf("weights manifest: meta %s: %w", MetaLinearPreview, err)
	}
	return lp, nil
}

// PreviewFitRequests are the images a preview map is fitted to (firstSeed 0) or checked on (another
// firstSeed, so that the check is not on the fitted images): n images of classes spread evenly over the
// model's (class i*classes/n, seed firstSeed+i), with the model's sampling settings s: what a user of
// the model sees by default.
func PreviewFitRequests(classes, n int, firstSeed uint64, s Sampling) []varmodel.Request {
	reqs := make([]varmodel.Request, n)
	for i := range reqs {
		reqs[i] = varmodel.Request{Labels: []int{i * classes / n}, CFG: s.CFG, TopK: s.TopK, TopP: s.TopP,
			MoreSmooth: s.MoreSmooth, Seed: firstSeed + uint64(i)}
	}
	return reqs
}
