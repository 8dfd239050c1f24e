package varmodel_test

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/vqvae"
	"github.com/webvar/webvar/internal/randmodel"
	"github.com/webvar/webvar/internal/testutil"
)

// randomSpec describes a random checkpoint pair in the official key layout, for configurations that the
// var-tiny fixture does not cover.
type randomSpec struct {
	depth, c, heads, classes, v, cvae int
	patchNums                         []int
	shared, l2                        bool
	phi                               vqvae.PhiLayout
	phiCount                          int
}

// randomVAR is a VAR checkpoint of spec s with the key layout of varmodel.Tensors and the official
// state dict's buffers (lvl_1L, and attn_bias_for_masking filled with -Inf: it must never be loaded).
// The values are drawn in table order from seed, scaled so that a random model samples non-degenerately.
func randomVAR(s randomSpec, seed int64) core.MapSource {
	r := rand.New(rand.NewSource(seed))
	m := core.MapSource{}
	put := func(name string, std float64, shape []int) {
		d := make([]float32, core.Shape(shape).Numel())
		for i := range d {
			if v := r.NormFloat64(); std != 0 { // a zero tensor still advances the stream
				d[i] = float32(std * v)
			}
		}
		m[name] = core.HostTensor{Shape: core.Shape(shape), Data: d}
	}
	C, L := s.c, 0
	for _, p := range s.patchNums {
		L += p * p
	}
	table := varmodel.Tensors(varmodel.Config{Depth: s.depth, C: C, Heads: s.heads, FFN: 4 * C, Cvae: s.cvae, V: s.v,
		Classes: s.classes, SharedAdaLN: s.shared, L2NormAttn: s.l2, PatchNums: s.patchNums, L: L})
	linear := table.Quantizer()
	for _, t := range table {
		stem, isBias := strings.CutSuffix(t.Name, ".bias")
		switch {
		case strings.HasSuffix(t.Name, "scale_mul_1H11"):
			sm := make([]float32, s.heads)
			for h := range sm {
				sm[h] = float32(math.Log(6 + 24*r.Float64()))
			}
			m[t.Name] = core.HostTensor{Shape: core.Shape(t.Shape), Data: sm}
		case strings.HasSuffix(t.Name, "zero_k_bias"):
			put(t.Name, 0, t.Shape)
		case t.Name == "class_emb.weight" || t.Name == "head.bias":
			put(t.Name, 1, t.Shape)
		case t.Name == "head.weight":
			put(t.Name, 4.5/math.Sqrt(float64(C)), t.Shape)
		case strings.HasSuffix(t.Name, "mat_qkv.weight"):
			put(t.Name, 1.5/math.Sqrt(float64(C)), t.Shape)
		case strings.HasSuffix(t.Name, "ada_lin.1.weight"):
			put(t.Name, 0.08, t.Shape)
		case strings.HasSuffix(t.Name, "ada_lin.1.bias") || strings.HasSuffix(t.Name, "ada_gss"):
			put(t.Name, 0.25, t.Shape)
		case linear(t.Name):
			put(t.Name, 1/math.Sqrt(float64(t.Shape[1])), t.Shape)
		case isBias && linear(stem+".weight"):
			put(t.Name, 0.1, t.Shape)
		default: // positions, level embedding, q and v biases
			put(t.Name, 0.3, t.Shape)
		}
		if t.Name == "pos_1LC" { // the buffers follow the positions in the official state dict
			put("lvl_1L", 0, []int{1, L})
			mask := make([]float32, L*L)
			for i := range mask {
				mask[i] = float32(math.Inf(-1))
			}
			m["attn_bias_for_masking"] = core.HostTensor{Shape: core.Shape{1, 1, L, L}, Data: mask}
		}
	}
	return m
}

// randomVAE: ch 32, ch_mult (1, 2), one res block per encoder level (two per decoder level), attention at
// the coarse level and in mid, so images are 2x the latent.
func randomVAE(s randomSpec, seed int64) core.MapSource {
	return randmodel.Map(randmodel.VAETensors(randmodel.VAESpec{Ch: 32, Mult: []int{1, 2}, NumRes: 1, V: s.v, Cvae: s.cvae,
		Scales: len(s.patchNums), Phi: s.phi, PhiCount: s.phiCount, Encoder: true}), uint64(seed))
}

var randomSpecs = map[string]randomSpec{
	"shared-adaln-plain-attn": {depth: 2, c: 128, heads: 2, classes: 10, v: 64, cvae: 8, patchNums: []int{1, 2, 3, 4, 6},
		shared: true, l2: false, phi: vqvae.PhiNonShared, phiCount: 5},
	"ten-scales-area-16-13": {depth: 1, c: 64, heads: 1, classes: 1000, v: 96, cvae: 4,
		patchNums: []int{1, 2, 3, 4, 5, 6, 8, 10, 13, 16}, l2: true, phi: vqvae.PhiPartiallyShared, phiCount: 4},
	"head-dim-48-shared-phi": {depth: 2, c: 96, heads: 2, classes: 5, v: 40, cvae: 8, patchNums: []int{1, 2, 4, 5},
		l2: true, phi: vqvae.PhiShared, phiCount: 1},
	"no-phi": {depth: 1, c: 64, heads: 2, classes: 3, v: 32, cvae: 8, patchNums: []int{1, 3, 5},
		l2: true, phi: vqvae.PhiIdentity},
}

func loadRandom(t *testing.T, s randomSpec, opt varmodel.Options) (*varmodel.Pipeline, core.Backend) {
	t.Helper()
	b := cpu.New(0)
	p, err := varmodel.LoadPipeline(randomVAR(s, 1), randomVAE(s, 2), b, opt)
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

// With teacher forcing on the generated tokens, the training-time forward (block-causal mask, whole
// sequence) must give the same logits as the KV-cached generation scale by scale. This ties together
// positions, level embeddings, word_embed inputs, the cache and the mask for every configuration.
func TestRandomConfigsKVCacheMatchesTeacherForcing(t *testing.T) {
	for name, s := range randomSpecs {
		t.Run(name, func(t *testing.T) {
			opt := varmodel.Options{}
			if name == "shared-adaln-plain-attn" {
				opt.PatchNums = s.patchNums // L = 66 over 5 scales has several decompositions
			}
			p, b := loadRandom(t, s, opt)
			c := p.VAR.Config()
			if c.Depth != s.depth || c.C != s.c || c.Heads != s.heads || c.Classes != s.classes || c.V != s.v ||
				c.SharedAdaLN != s.shared || c.L2NormAttn != s.l2 || fmt.Sprint(c.PatchNums) != fmt.Sprint(s.patchNums) {
				t.Fatalf("inferred %+v from %+v", c, s)
			}
			if vc := p.VAE.Config(); vc.Phi != s.phi || vc.PhiCount != s.phiCount {
				t.Fatalf("VAE Phi %v x%d, want %v x%d", vc.Phi, vc.PhiCount, s.phi, s.phiCount)
			}
			labels := []int{0, s.classes - 1}
			o := core.NewOps(b)
			raw := map[int]core.HostTensor{}
			o.OnTap = func(n string, x *core.Tensor) {
				var si int
				if _, err := fmt.Sscanf(n, "ar.s%d.logits_raw", &si); err == nil {
					raw[si] = o.Download(x)
				}
			}
			res, err := p.Run(context.Background(), o, varmodel.Request{Labels: labels, CFG: 0, TopK: 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			o2 := core.NewOps(b)
			x := p.VAE.VarInput(o2, res.Tokens, len(labels))
			tf := o2.Download(p.VAR.TeacherForward(o2, labels, x))
			if err := o2.Err(); err != nil {
				t.Fatal(err)
			}
			pos := 0
			for si, pn := range s.patchNums {
				l := pn * pn
				var want, got []float32
				for bi := range labels {
					row := tf.Data[(bi*c.L+pos)*c.V : (bi*c.L+pos+l)*c.V]
					want = append(want, row...)
					got = append(got, raw[si].Data[bi*l*c.V:(bi+1)*l*c.V]...)
				}
				testutil.RelClose(t, fmt.Sprintf("scale %d logits (AR vs teacher forcing)", si), got, want, 1e-4)
				pos += l
			}
			if sz := p.VAE.ImageSize(); !res.Images.Shape.Equal(core.Shape{2, 3, sz, sz}) {
				t.Fatalf("image shape %v", res.Images.Shape)
			}
		})
	}
}

// Shared AdaLN folds ada_gss into the shared linear's bias: check the modulation against the formula
// ada_gss + Linear(SiLU(cond)) computed directly.
func TestSharedAdaLNModulation(t *testing.T) {
	s := randomSpecs["shared-adaln-plain-attn"]
	src := randomVAR(s, 1)
	b := cpu.New(0)
	m, err := varmodel.Load(core.NewWeights(src, b), varmodel.Options{PatchNums: s.patchNums})
	if err != nil {
		t.Fatal(err)
	}
	o := core.NewOps(b)
	label := 3
	_, mod := varmodel.Condition(m, o, []int{label})
	C := s.c
	cond := src["class_emb.weight"].Data[label*C : (label+1)*C]
	w, bias := src["shared_ada_lin.1.weight"].Data, src["shared_ada_lin.1.bias"].Data
	for blk := 0; blk < s.depth; blk++ {
		gss := src[fmt.Sprintf("blocks.%d.ada_gss", blk)].Data
		want := make([]float32, 6*C)
		for j := range want {
			acc := float64(bias[j])
			for k := 0; k < C; k++ {
				x := float64(cond[k])
				acc += float64(w[j*C+k]) * x / (1 + math.Exp(-x))
			}
			want[j] = float32(acc + float64(gss[j]))
		}
		a := mod.Blocks[blk]
		parts := []*core.Tensor{a.Gamma1, a.Gamma2, a.Scale1, a.Scale2, a.Shift1, a.Shift2}
		for i, pt := range parts {
			got := o.Download(pt).Data
			testutil.AbsClose(t, fmt.Sprintf("block %d chunk %d", blk, i), got, want[i*C:(i+1)*C], 1e-4)
		}
	}
}

func TestPlainAttentionNeedsHeadsWhenWidthIsNotMultipleOf64(t *testing.T) {
	s := randomSpec{depth: 1, c: 96, heads: 3, classes: 4, v: 16, cvae: 4, patchNums: []int{1, 2, 3}, l2: false}
	src := randomVAR(s, 5)
	if _, err := varmodel.InferConfig(src, varmodel.Options{}); err == nil {
		t.Fatal("expected an error asking for the head count")
	}
	c, err := varmodel.InferConfig(src, varmodel.Options{Heads: 3})
	if err != nil {
		t.Fatal(err)
	}
	if c.Heads != 3 || c.HeadDim() != 32 {
		t.Fatalf("heads %d head_dim %d", c.Heads, c.HeadDim())
	}
}

func TestSamplingIsSeededAndMoreSmoothGreedyIsExact(t *testing.T) {
	s := randomSpecs["head-dim-48-shared-phi"]
	p, b := loadRandom(t, s, varmodel.Options{})
	gen := func(req varmodel.Request) *varmodel.Result {
		t.Helper()
		r, err := p.Generate(context.Background(), b, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	req := varmodel.Request{Labels: []int{1, 2}, CFG: 2, TopK: 20, TopP: 0.9, Seed: 7}
	a, a2 := gen(req), gen(req)
	if fmt.Sprint(a.Tokens) != fmt.Sprint(a2.Tokens) {
		t.Fatal("same seed gave different tokens")
	}
	req.Seed = 8
	if c := gen(req); fmt.Sprint(a.Tokens) == fmt.Sprint(c.Tokens) {
		t.Fatal("seeds 7 and 8 gave identical tokens")
	}
	// With top-k 1 only one logit survives the mask, so the Gumbel-softmax weights are one-hot and
	// more_smooth must reproduce the greedy embedding exactly.
	g1 := gen(varmodel.Request{Labels: []int{1, 2}, CFG: 2, TopK: 1})
	g2 := gen(varmodel.Request{Labels: []int{1, 2}, CFG: 2, TopK: 1, MoreSmooth: true, Seed: 99})
	if fmt.Sprint(g1.Tokens) != fmt.Sprint(g2.Tokens) {
		t.Fatal("more_smooth changed greedy tokens")
	}
	testutil.AbsClose(t, "more_smooth greedy image", g2.Images.Data, g1.Images.Data, 1e-6)
	// more_smooth with sampling: deterministic for a seed too.
	ms := varmodel.Request{Labels: []int{1}, CFG: 1, TopK: 10, MoreSmooth: true, Seed: 3}
	m1, m2 := gen(ms), gen(ms)
	testutil.AbsClose(t, "more_smooth repeat", m2.Images.Data, m1.Images.Data, 0)
}

func TestGenerateIsCancellable(t *testing.T) {
	p, b := loadRandom(t, randomSpecs["no-phi"], varmodel.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := p.Generate(ctx, b, varmodel.Request{Labels: []int{0}, TopK: 1}, func(ev varmodel.ScaleEvent) error {
		n++
		cancel()
		return nil
	})
	if err != context.Canceled || n != 1 {
		t.Fatalf("err %v after %d scales, want context.Canceled after 1", err, n)
	}
}

func TestPrefixTokensAreKept(t *testing.T) {
	p, b := loadRandom(t, randomSpecs["no-phi"], varmodel.Options{})
	ref, err := p.Generate(context.Background(), b, varmodel.Request{Labels: []int{1}, TopK: 5, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Reroll from scale 2: scales 0 and 1 are kept, the rest resampled with another seed.
	r, err := p.Generate(context.Background(), b, varmodel.Request{Labels: []int{1}, TopK: 5, Seed: 2, Prefix: ref.Tokens[:2]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.Tokens[:2]) != fmt.Sprint(ref.Tokens[:2]) {
		t.Fatal("prefix not kept")
	}
	if _, err := p.Generate(context.Background(), b, varmodel.Request{Labels: []int{1}, Prefix: [][]int{{99}}}, nil); err == nil {
		t.Fatal("out-of-range prefix token accepted")
	}
}

func TestRandomAfterKeepsEarlyScalesAndRandomizesTheRest(t *testing.T) {
	p, b := loadRandom(t, randomSpecs["no-phi"], varmodel.Options{}) // patch_nums 1, 3, 5; V = 32
	v := p.VAR.Config().V
	base := varmodel.Request{Labels: []int{1, 2}, CFG: 1.5, TopK: 1, Seed: 4}
	ref, err := p.Generate(context.Background(), b, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := base
	req.RandomAfter = 1
	o := core.NewOps(b)
	var taps []string
	o.OnTap = func(name string, _ *core.Tensor) { taps = append(taps, name) }
	r, err := p.Run(context.Background(), o, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.Tokens[0]) != fmt.Sprint(ref.Tokens[0]) {
		t.Fatalf("scale 0 changed: %v, normal run %v", r.Tokens[0], ref.Tokens[0])
	}
	for si := 1; si < len(r.Tokens); si++ {
		if fmt.Sprint(r.Tokens[si]) == fmt.Sprint(ref.Tokens[si]) {
			t.Errorf("scale %d equals the greedy run's: not randomized", si)
		}
		for _, id := range r.Tokens[si] {
			if id < 0 || id >= v {
				t.Fatalf("scale %d: token %d outside [0, %d)", si, id, v)
			}
		}
	}
	// The randomized scales never read logits, so the transformer must not run for them.
	for _, name := range taps {
		if strings.HasPrefix(name, "ar.s1.block") || strings.HasPrefix(name, "ar.s2.logits") {
			t.Fatalf("tap %s: the transformer ran for a randomized scale", name)
		}
	}
	r2, err := p.Generate(context.Background(), b, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r2.Tokens) != fmt.Sprint(r.Tokens) {
		t.Fatal("same seed gave different random tokens")
	}
	// RandomAfter at or past the last scale changes nothing.
	req.RandomAfter = 3
	same, err := p.Generate(context.Background(), b, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.AbsClose(t, "random-after 3 of 3 scales", same.Images.Data, ref.Images.Data, 0)
	req.RandomAfter = -1
	if _, err := p.Generate(context.Background(), b, req, nil); err == nil {
		t.Fatal("negative RandomAfter accepted")
	}
}
