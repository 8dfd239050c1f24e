package varmodel

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/internal/testutil"
)

// quantSource serves a checkpoint with its Linear weights quantized, like a converted weights directory.
type quantSource struct {
	core.WeightSource
	q map[string]core.QuantHost
}

func (s quantSource) Quant(name string) (core.QuantHost, bool) {
	q, ok := s.q[name]
	return q, ok
}

func (s quantSource) Load(name string) (core.HostTensor, error) {
	if q, ok := s.q[name]; ok {
		return q.Dequantize()
	}
	return s.WeightSource.Load(name)
}

func quantized(t *testing.T, src core.WeightSource, scheme core.QuantScheme) quantSource {
	t.Helper()
	qs := quantSource{WeightSource: src, q: map[string]core.QuantHost{}}
	cfg, err := InferConfig(src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	quantizable := Tensors(cfg).Quantizer()
	for _, name := range src.Names() {
		if !quantizable(name) {
			continue
		}
		h, err := src.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		q, err := core.Quantize(h, scheme)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		qs.q[name] = q
	}
	return qs
}

func TestQuantizableNames(t *testing.T) {
	c := Config{Depth: 12, C: 64, Heads: 1, FFN: 256, Cvae: 8, V: 32, Classes: 4, L2NormAttn: true, PatchNums: []int{1, 2}, L: 5}
	own := Tensors(c).Quantizer()
	c.SharedAdaLN = true
	shared := Tensors(c).Quantizer()
	for name, want := range map[string]bool{
		"blocks.3.attn.mat_qkv.weight": true, "blocks.0.ffn.fc2.weight": true, "head.weight": true,
		"word_embed.weight": true, "blocks.11.ada_lin.1.weight": true,
		"class_emb.weight": false, "head.bias": false, "pos_1LC": false, "blocks.0.attn.q_bias": false,
		"quantize.embedding.weight": false, "xhead.weight": false, "blocks.12.ffn.fc1.weight": false,
	} {
		if own(name) != want {
			t.Errorf("quantizable(%q) = %v", name, !want)
		}
	}
	if !shared("shared_ada_lin.1.weight") || shared("blocks.0.ada_gss") || shared("blocks.0.ada_lin.1.weight") {
		t.Error("shared AdaLN: only shared_ada_lin.1.weight is a Linear weight of the modulation")
	}
}

// With int8 / int4 Linear weights the model runs end to end with the weights kept quantized on the
// backend; the greedy tokens' agreement with the official f32 run is reported (int8 is expected to keep
// most of them: the smallest top-2 logit gap of the golden runs is 0.008).
func TestGreedyWithQuantizedLinears(t *testing.T) {
	g := testutil.OpenGolden(t, testutil.VarTiny("golden.safetensors"))
	varSrc := testutil.Source(t, testutil.VarTiny("var.pth"))
	for _, scheme := range []core.QuantScheme{core.QuantInt8, core.QuantInt4} {
		t.Run(scheme.String(), func(t *testing.T) {
			b := cpu.New(0)
			p, err := LoadPipeline(quantized(t, varSrc, scheme), testutil.Source(t, testutil.VarTiny("vae.pth")), b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := p.VAR.headW.Storage().(core.QuantHost); !ok {
				t.Fatalf("head weight was not kept quantized (storage %T)", p.VAR.headW.Storage())
			}
			same, total := 0, 0
			for _, run := range []string{"ar0", "ar1", "ar2"} {
				req := Request{Labels: g.Ints(run + ".label_B"), CFG: float64(g.F32(run + ".cfg").Data[0]), TopK: 1}
				res, err := p.Generate(context.Background(), b, req, nil)
				if err != nil {
					t.Fatal(err)
				}
				for si := range res.Tokens {
					want := g.Ints(fmt.Sprintf("%s.idx.s%d", run, si))
					for i, id := range res.Tokens[si] {
						if id < 0 || id >= p.VAR.Config().V {
							t.Fatalf("token %d out of range", id)
						}
						total++
						if id == want[i] {
							same++
						}
					}
				}
				for _, v := range res.Images.Data {
					if math.IsNaN(float64(v)) || v < 0 || v > 1 {
						t.Fatalf("image value %v", v)
					}
				}
			}
			t.Logf("%v Linear weights: %d/%d greedy tokens (%.1f%%) equal to the official f32 run", scheme, same, total, 100*float64(same)/float64(total))
		})
	}
}
