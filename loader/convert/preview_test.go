package convert

import (
	"slices"
	"strings"
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/vqvae"
	"github.com/webvar/webvar/weights"
)

// A map survives its meta text exactly, and LoadPipeline attaches the map of a directory's meta.
func TestLinearPreviewMetaRoundTrip(t *testing.T) {
	const cvae = 8 // var-tiny's
	w := make([]float32, 3*(cvae+1))
	for i := range w {
		w[i] = float32(i)/7 - 1.3 // values that need every digit of a float32
	}
	lp, err := vqvae.NewLinearPreview(cvae, w)
	if err != nil {
		t.Fatal(err)
	}
	text, err := LinearPreviewMeta(lp)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LinearPreviewOf(&weights.Manifest{Meta: map[string]string{MetaLinearPreview: text}}, cvae)
	if err != nil || !slices.Equal(got.W_3K, w) {
		t.Fatalf("round trip: %v, %v (want %v)", got, err, w)
	}
	if got, err := LinearPreviewOf(&weights.Manifest{}, cvae); got != nil || err != nil {
		t.Fatalf("no meta: %v, %v; want nil, nil", got, err)
	}

	m, _ := convertTiny(t, ConvertOptions{Quant: weights.F32})
	p, err := LoadPipeline(m, cpu.New(0), varmodel.Options{})
	if err != nil || p.LinearPreview != nil {
		t.Fatalf("a directory without a map: %v, map %v", err, p.LinearPreview)
	}
	m.Manifest().Meta[MetaLinearPreview] = text
	if p, err = LoadPipeline(m, cpu.New(0), varmodel.Options{}); err != nil || p.LinearPreview == nil || !slices.Equal(p.LinearPreview.W_3K, w) {
		t.Fatalf("a directory with a map: %v, map %v", err, p.LinearPreview)
	}
	if p.InteractivePreviews() != varmodel.PreviewLinear {
		t.Errorf("interactive previews of a model with a map: %v, want linear", p.InteractivePreviews())
	}
	m.Manifest().Meta[MetaLinearPreview] = "[[1,2],[3,4],[5,6]]"
	if _, err := LoadPipeline(m, cpu.New(0), varmodel.Options{}); err == nil || !strings.Contains(err.Error(), MetaLinearPreview) {
		t.Errorf("a map for 1 latent channel on an 8-channel model: %v, want an error naming %s", err, MetaLinearPreview)
	}
}

func TestLinearPreviewOfRejectsMalformedMeta(t *testing.T) {
	for _, v := range []string{
		"", "[[1,2,3]]", "[[1,2,3],[1,2,3]]", "[[1,2,3],[1,2,3],[1,2]]", `[[1,2,3],[1,2,3],[1,2,"x"]]`,
		"[[1,2,3],[1,2,3],[1,2,3],[1,2,3]]", "[[1,2,3],[1,2,3],[1,2,1e39]]",
	} {
		if lp, err := LinearPreviewOf(&weights.Manifest{Meta: map[string]string{MetaLinearPreview: v}}, 2); err == nil {
			t.Errorf("%q: accepted as %v", v, lp)
		} else if !strings.Contains(err.Error(), MetaLinearPreview) {
			t.Errorf("%q: error %q does not name the key", v, err)
		}
	}
}

// The fit's requests spread over the classes and take the model's sampling settings.
func TestPreviewFitRequests(t *testing.T) {
	s := Sampling{CFG: 3, TopK: 100, TopP: 0.9}
	reqs := PreviewFitRequests(10, 4, 1000, s)
	var labels []int
	for i, r := range reqs {
		labels = append(labels, r.Labels...)
		if r.Seed != 1000+uint64(i) || r.CFG != 3 || r.TopK != 100 || r.TopP != 0.9 || r.Previews != varmodel.PreviewNone {
			t.Errorf("request %d: %+v", i, r)
		}
	}
	if !slices.Equal(labels, []int{0, 2, 5, 7}) {
		t.Errorf("labels %v, want [0 2 5 7]", labels)
	}
}
