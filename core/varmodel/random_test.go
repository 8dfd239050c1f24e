package varmodel

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
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

type randGen struct {
	r *rand.Rand
	m core.MapSource
}

func (g *randGen) put(name string, std, mean float64, shape ...int) {
	s := core.Shape(shape)
	d := make([]float32, s.Numel())
	for i := range d {
		d[i] = float32(mean + std*g.r.NormFloat64())
	}
	g.m[name] = core.HostTensor{Shape: s, Data: d}
}

func (g *randGen) linear(name string, out, in int) {
	g.put(name+".weight", 1/math.Sqrt(float64(in)), 0, out, in)
	g.put(name+".bias", 0.1, 0, out)
}

func randomVAR(s randomSpec, seed int64) core.MapSource {
	g := &randGen{r: rand.New(rand.NewSource(seed)), m: core.MapSource{}}
	C, L := s.c, 0
	for _, p := range s.patchNums {
		L += p * p
	}
	g.put("pos_start", 0.3, 0, 1, s.patchNums[0]*s.patchNums[0], C)
	g.put("pos_1LC", 0.3, 0, 1, L, C)
	g.put("lvl_1L", 0, 0, 1, L)
	mask := make([]float32, L*L)
	for i := range mask {
		mask[i] = float32(math.Inf(-1)) // must never be loaded
	}
	g.m["attn_bias_for_masking"] = core.HostTensor{Shape: core.Shape{1, 1, L, L}, Data: mask}
	g.linear("word_embed", C, s.cvae)
	g.put("class_emb.weight", 1, 0, s.classes+1, C)
	g.put("lvl_embed.weight", 0.3, 0, len(s.patchNums), C)
	if s.shared {
		g.put("shared_ada_lin.1.weight", 0.08, 0, 6*C, C)
		g.put("shared_ada_lin.1.bias", 0.25, 0, 6*C)
	}
	for i := 0; i < s.depth; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		if s.l2 {
			sm := make([]float32, s.heads)
			for h := range sm {
				sm[h] = float32(math.Log(6 + 24*g.r.Float64()))
			}
			g.m[p+"attn.scale_mul_1H11"] = core.HostTensor{Shape: core.Shape{1, s.heads, 1, 1}, Data: sm}
		}
		g.put(p+"attn.q_bias", 0.3, 0, C)
		g.put(p+"attn.v_bias", 0.3, 0, C)
		g.put(p+"attn.zero_k_bias", 0, 0, C)
		g.put(p+"attn.mat_qkv.weight", 1.5/math.Sqrt(float64(C)), 0, 3*C, C)
		g.linear(p+"attn.proj", C, C)
		g.linear(p+"ffn.fc1", 4*C, C)
		g.linear(p+"ffn.fc2", C, 4*C)
		if s.shared {
			g.put(p+"ada_gss", 0.25, 0, 1, 1, 6, C)
		} else {
			g.put(p+"ada_lin.1.weight", 0.08, 0, 6*C, C)
			g.put(p+"ada_lin.1.bias", 0.25, 0, 6*C)
		}
	}
	g.put("head_nm.ada_lin.1.weight", 0.08, 0, 2*C, C)
	g.put("head_nm.ada_lin.1.bias", 0.25, 0, 2*C)
	g.put("head.weight", 4.5/math.Sqrt(float64(C)), 0, s.v, C)
	g.put("head.bias", 1, 0, s.v)
	return g.m
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

func loadRandom(t *testing.T, s randomSpec, opt Options) (*Pipeline, core.Backend) {
	t.Helper()
	b := cpu.New(0)
	p, err := LoadPipeline(randomVAR(s, 1), randomVAE(s, 2), b, opt)
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
			opt := Options{}
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
			res, err := p.Run(context.Background(), o, Request{Labels: labels, CFG: 0, TopK: 1}, nil)
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
	m, err := Load(core.NewWeights(src, b), Options{PatchNums: s.patchNums})
	if err != nil {
		t.Fatal(err)
	}
	o := core.NewOps(b)
	label := 3
	_, mod := m.condition(o, []int{label})
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
	if _, err := InferConfig(src, Options{}); err == nil {
		t.Fatal("expected an error asking for the head count")
	}
	c, err := InferConfig(src, Options{Heads: 3})
	if err != nil {
		t.Fatal(err)
	}
	if c.Heads != 3 || c.HeadDim() != 32 {
		t.Fatalf("heads %d head_dim %d", c.Heads, c.HeadDim())
	}
}

func TestSamplingIsSeededAndMoreSmoothGreedyIsExact(t *testing.T) {
	s := randomSpecs["head-dim-48-shared-phi"]
	p, b := loadRandom(t, s, Options{})
	gen := func(req Request) *Result {
		t.Helper()
		r, err := p.Generate(context.Background(), b, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	req := Request{Labels: []int{1, 2}, CFG: 2, TopK: 20, TopP: 0.9, Seed: 7}
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
	g1 := gen(Request{Labels: []int{1, 2}, CFG: 2, TopK: 1})
	g2 := gen(Request{Labels: []int{1, 2}, CFG: 2, TopK: 1, MoreSmooth: true, Seed: 99})
	if fmt.Sprint(g1.Tokens) != fmt.Sprint(g2.Tokens) {
		t.Fatal("more_smooth changed greedy tokens")
	}
	testutil.AbsClose(t, "more_smooth greedy image", g2.Images.Data, g1.Images.Data, 1e-6)
	// more_smooth with sampling: deterministic for a seed too.
	ms := Request{Labels: []int{1}, CFG: 1, TopK: 10, MoreSmooth: true, Seed: 3}
	m1, m2 := gen(ms), gen(ms)
	testutil.AbsClose(t, "more_smooth repeat", m2.Images.Data, m1.Images.Data, 0)
}

func TestGenerateIsCancellable(t *testing.T) {
	p, b := loadRandom(t, randomSpecs["no-phi"], Options{})
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := p.Generate(ctx, b, Request{Labels: []int{0}, TopK: 1}, func(ev ScaleEvent) error {
		n++
		cancel()
		return nil
	})
	if err != context.Canceled || n != 1 {
		t.Fatalf("err %v after %d scales, want context.Canceled after 1", err, n)
	}
}

func TestPrefixTokensAreKept(t *testing.T) {
	p, b := loadRandom(t, randomSpecs["no-phi"], Options{})
	ref, err := p.Generate(context.Background(), b, Request{Labels: []int{1}, TopK: 5, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Reroll from scale 2: scales 0 and 1 are kept, the rest resampled with another seed.
	r, err := p.Generate(context.Background(), b, Request{Labels: []int{1}, TopK: 5, Seed: 2, Prefix: ref.Tokens[:2]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.Tokens[:2]) != fmt.Sprint(ref.Tokens[:2]) {
		t.Fatal("prefix not kept")
	}
	if _, err := p.Generate(context.Background(), b, Request{Labels: []int{1}, Prefix: [][]int{{99}}}, nil); err == nil {
		t.Fatal("out-of-range prefix token accepted")
	}
}

func TestRandomAfterKeepsEarlyScalesAndRandomizesTheRest(t *testing.T) {
	p, b := loadRandom(t, randomSpecs["no-phi"], Options{}) // patch_nums 1, 3, 5; V = 32
	v := p.VAR.Config().V
	base := Request{Labels: []int{1, 2}, CFG: 1.5, TopK: 1, Seed: 4}
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
