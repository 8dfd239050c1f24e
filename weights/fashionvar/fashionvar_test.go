package fashionvar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/bench"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
	"github.com/webvar/webvar/weights/fashionvar"
)

// greedyRuns are the tokens that weights/train/record_tokens.py computed in PyTorch (float32, CPU) from
// exactly these embedded weights (int8 Linear weights dequantized as weights/FORMAT.md says).
type greedyRuns struct {
	PatchNums []int `json:"patch_nums"`
	Runs      []struct {
		Label   int     `json:"label"`
		CFG     float64 `json:"cfg"`
		Tokens  [][]int `json:"tokens"`
		MinTop2 float64 `json:"min_top2_gap"`
	} `json:"runs"`
}

func loadRuns(t *testing.T) greedyRuns {
	t.Helper()
	raw, err := os.ReadFile("testdata/greedy.json")
	if err != nil {
		t.Fatal(err)
	}
	var g greedyRuns
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Runs) == 0 {
		t.Fatal("testdata/greedy.json has no runs")
	}
	return g
}

func load(t *testing.T, b core.Backend) (*varmodel.Pipeline, *weights.Manifest) {
	t.Helper()
	m, err := weights.Load(context.Background(), fashionvar.Source(), weights.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := convert.LoadPipeline(m, b, varmodel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p, m.Manifest()
}

// The Go engine and the PyTorch training code agree on the shipped model: greedy tokens identical for
// every class, without and with guidance.
func TestGreedyTokensMatchPyTorch(t *testing.T) {
	t.Run("cpu", func(t *testing.T) { testGreedy(t, cpu.New(0), -1) })
	t.Run("webgpu", func(t *testing.T) {
		b, err := webgpu.New()
		if err != nil {
			t.Fatalf("no WebGPU adapter (install mesa-vulkan-drivers for lavapipe): %v", err)
		}
		defer b.Close()
		testGreedy(t, b, 3) // lavapipe is a slow CPU emulation: a few runs
	})
}

func testGreedy(t *testing.T, b core.Backend, limit int) {
	g := loadRuns(t)
	p, _ := load(t, b)
	if got := p.VAR.Config().PatchNums; fmt.Sprint(got) != fmt.Sprint(g.PatchNums) {
		t.Fatalf("patch_nums %v, recorded %v", got, g.PatchNums)
	}
	for i, r := range g.Runs {
		if limit >= 0 && i >= limit {
			break
		}
		res, err := p.Generate(context.Background(), b, varmodel.Request{Labels: []int{r.Label}, CFG: r.CFG, TopK: 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := res.TokensOf(0, g.PatchNums)
		for si := range r.Tokens {
			diff := 0
			for j := range r.Tokens[si] {
				if got[si][j] != r.Tokens[si][j] {
					diff++
				}
			}
			if diff > 0 {
				t.Errorf("class %d cfg %g scale %d: %d of %d tokens differ from PyTorch's (smallest top-2 logit gap of that run %.3g)",
					r.Label, r.CFG, si, diff, len(r.Tokens[si]), r.MinTop2)
				break
			}
		}
	}
}

// The metadata that generate, serve and preview rely on.
func TestMetadata(t *testing.T) {
	m, err := weights.LoadManifest(context.Background(), fashionvar.Source())
	if err != nil {
		t.Fatal(err)
	}
	names, err := convert.ClassNames(m)
	if err != nil || len(names) != 10 || names[0] != "T-shirt/top" || names[9] != "Ankle boot" {
		t.Fatalf("class names %q, %v", names, err)
	}
	s, err := convert.SamplingOf(m)
	if err != nil || s == nil {
		t.Fatalf("sampling defaults %+v, %v", s, err)
	}
	if s.TopK < 2 || s.CFG <= 0 {
		t.Fatalf("sampling defaults %+v: want sampling (top-k > 1) with guidance", s)
	}
}

// The shipped model carries a fitted linear preview map, so front ends show linear previews, and the map
// earns its place: at the coarsest scales its previews are closer to the full decodes than fast previews
// (which decode a 1x1 or 2x2 latent, smaller than anything the decoder saw in training) by a wide
// margin (on 20 images: 15.0 against 10.4 dB at scale 1; README, Performance).
func TestLinearPreviewMap(t *testing.T) {
	b := cpu.New(0)
	p, m := load(t, b)
	if p.LinearPreview == nil || p.InteractivePreviews() != varmodel.PreviewLinear {
		t.Fatalf("no linear preview map in the metadata (%s); interactive previews %v", convert.MetaLinearPreview, p.InteractivePreviews())
	}
	s, err := convert.SamplingOf(m)
	if err != nil || s == nil {
		t.Fatal(s, err)
	}
	q, err := bench.PreviewQuality(context.Background(), b, p, convert.PreviewFitRequests(10, 4, 1000, *s))
	if err != nil {
		t.Fatal(err)
	}
	for _, sq := range q[:2] {
		if sq.LinearPSNR < sq.FastPSNR+2 || sq.LinearPSNR < 13 {
			t.Errorf("scale %d (%dx%d): linear previews %.2f dB, fast %.2f dB from the full decode; want linear >= 13 dB and 2 dB ahead",
				sq.Scale+1, sq.PN, sq.PN, sq.LinearPSNR, sq.FastPSNR)
		}
	}
	t.Logf("PSNR against full previews per scale (linear / fast): %+v", q)
}
