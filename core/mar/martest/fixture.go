// Package martest checks a MAR fixture directory (golden tensors from the official code, see
// testdata/mar-tiny/golden.md) on any backend: the mar package's tests run it on the CPU, core/webgpu's on
// the GPU, each on testdata/mar-tiny and on every WEBVAR_FIXTURES directory of the family.
package martest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/mar"
	"github.com/webvar/webvar/internal/testutil"
)

// Tolerances of golden.md: primitives ~1e-5 absolute; activations ~1e-4 relative to the tensor's max
// |value|. Diffusion outputs go through the large-t step, which multiplies by sqrt(1/alpha_bar) ~ 1e4, so
// the sampled tokens and everything after them are compared with a looser relative tolerance.
const (
	opTol     = 1e-5
	relTol    = 1e-4
	sampleTol = 5e-4
)

// Config is the part of a fixture's config.json the checks need.
type Config struct {
	MAR struct {
		EncHeads  int    `json:"encoder_num_heads"`
		DecHeads  int    `json:"decoder_num_heads"`
		DiffSteps string `json:"num_sampling_steps"`
	} `json:"mar"`
	AR []Run `json:"ar"`
}

// Run is one recorded sampling run.
type Run struct {
	Name        string  `json:"name"`
	B           int     `json:"B"`
	Labels      []int   `json:"labels"` // null: unconditional
	Iters       int     `json:"num_iter"`
	CFG         float64 `json:"cfg"`
	Schedule    string  `json:"cfg_schedule"`
	Temperature float64 `json:"temperature"`
	Detailed    bool    `json:"detailed"`
}

// ReadConfig reads the fixture's config.json.
func ReadConfig(t *testing.T, f testutil.Fixture) Config {
	t.Helper()
	var c Config
	data, err := os.ReadFile(f.Path("config.json"))
	if err != nil {
		t.Fatalf("fixture %s: %v", f.Name, err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("fixture %s: config.json: %v", f.Name, err)
	}
	return c
}

// Load opens the fixture's checkpoints on b.
func Load(t *testing.T, f testutil.Fixture, b core.Backend) (*mar.Pipeline, Config) {
	t.Helper()
	c := ReadConfig(t, f)
	p, err := mar.LoadPipeline(testutil.Source(t, f.Path("mar.pth")), testutil.Source(t, f.Path("vae.pth")), b,
		mar.Options{EncHeads: c.MAR.EncHeads, DecHeads: c.MAR.DecHeads})
	if err != nil {
		t.Fatalf("fixture %s: %v", f.Name, err)
	}
	return p, c
}

// Check runs every golden comparison of the fixture on b. Orders and masks must match exactly.
func Check(t *testing.T, f testutil.Fixture, b core.Backend) {
	p, c := Load(t, f, b)
	g := testutil.OpenGolden(t, f.Path("golden.safetensors"))
	t.Run("schedule", func(t *testing.T) { checkSchedule(t, g) })
	t.Run("diffusion-net", func(t *testing.T) { checkNet(t, p, g, b) })
	t.Run("vae", func(t *testing.T) { checkVAE(t, p, g, b) })
	if len(c.AR) == 0 {
		t.Errorf("fixture %s has no sampling runs (config.json ar)", f.Name)
	}
	for _, run := range c.AR {
		t.Run(run.Name, func(t *testing.T) { checkRun(t, p, g, b, run) })
	}
}

func f64Close(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", name, len(got), len(want))
		return
	}
	for i := range want {
		if d := math.Abs(got[i] - want[i]); !(d <= tol*math.Max(1, math.Abs(want[i]))) {
			t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want[i])
			return
		}
	}
}

func checkSchedule(t *testing.T, g *testutil.Golden) {
	tm := g.Ints("diff.timestep_map")
	s, err := mar.NewSchedule(len(tm))
	if err != nil {
		t.Fatal(err)
	}
	testutil.IntsEqual(t, "diff.timestep_map", s.TimestepMap, tm)
	const tol = 1e-12
	for _, tab := range []struct {
		name string
		got  []float64
	}{
		{"betas", s.Betas}, {"alphas_cumprod", s.AlphasCumprod}, {"alphas_cumprod_prev", s.AlphasCumprodPrev},
		{"sqrt_recip_alphas_cumprod", s.SqrtRecipAlphasCumprod}, {"sqrt_recipm1_alphas_cumprod", s.SqrtRecipm1AlphasCumprod},
		{"posterior_variance", s.PosteriorVariance}, {"posterior_log_variance_clipped", s.PosteriorLogVarClipped},
		{"posterior_mean_coef1", s.PosteriorMeanCoef1}, {"posterior_mean_coef2", s.PosteriorMeanCoef2}, {"log_betas", s.LogBetas},
	} {
		f64Close(t, "diff."+tab.name, tab.got, g.F64("diff."+tab.name), tol)
	}
	if g.Has("diff.base_betas") {
		f64Close(t, "diff.base_betas", mar.CosineBetas(mar.TrainSteps), g.F64("diff.base_betas"), tol)
	}
}

func checkNet(t *testing.T, p *mar.Pipeline, g *testutil.Golden, b core.Backend) {
	o := core.NewOps(b)
	net := p.M.Net()
	if g.Has("temb.t") {
		ts := g.Ints("temb.t")
		want := g.F32("temb.freq")
		var got []float32
		for _, tt := range ts {
			got = append(got, mar.TimestepFreqs(tt, want.Shape[1])...)
		}
		// cos and sin of t*f: a one-ulp difference in f (PyTorch's float32 exp against a correctly
		// rounded one) moves the argument t*f by up to t*f*2^-23, and the value by as much.
		maxArg := 0
		for _, tt := range ts {
			maxArg = max(maxArg, tt)
		}
		testutil.AbsClose(t, "temb.freq", got, want.Data, opTol+2*float64(maxArg)*0x1p-23)
		testutil.RelClose(t, "temb.out", o.Download(net.TimeEmbed(o, ts)).Data, g.F32("temb.out").Data, relTol)
	}
	x, c, ts := g.F32("tf.x"), g.F32("tf.c"), g.Ints("tf.t")
	cond := net.Cond(o, o.Upload(c))
	out := o.Download(net.Forward(o, o.Upload(x), ts, cond))
	testutil.RelClose(t, "tf.net_out", out.Data, g.F32("tf.net_out").Data, relTol)
	if g.Has("tf.net_out_cfg") {
		// forward_with_cfg(x, t, c, 2.0): the network on [x[:N/2]; x[:N/2]], eps mixed, variance as is.
		N, ct := x.Shape[0], x.Shape[1]
		half := x.Data[:N/2*ct]
		dup := append(append([]float32(nil), half...), half...)
		raw := o.Download(net.Forward(o, o.Upload(core.HostTensor{Shape: x.Shape, Data: dup}), ts, cond)).Data
		mixed := make([]float32, len(raw))
		copy(mixed, raw)
		for r := range N / 2 {
			for j := range ct {
				cv, uv := raw[r*2*ct+j], raw[(N/2+r)*2*ct+j]
				e := uv + 2*(cv-uv)
				mixed[r*2*ct+j], mixed[(N/2+r)*2*ct+j] = e, e
			}
		}
		testutil.RelClose(t, "tf.net_out_cfg", mixed, g.F32("tf.net_out_cfg").Data, relTol)
	}
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
}

func checkVAE(t *testing.T, p *mar.Pipeline, g *testutil.Golden, b core.Backend) {
	if !g.Has("vae.x") {
		return
	}
	o := core.NewOps(b)
	m := o.Download(p.V.Moments(o, o.Upload(g.F32("vae.x"))))
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	testutil.RelClose(t, "vae.moments", m.Data, g.F32("vae.moments").Data, relTol)
	// The mean is the first Embed channels of the moments.
	e := p.V.Config().Embed
	B, H, W := m.Shape[0], m.Shape[2], m.Shape[3]
	mean := core.HostTensor{Shape: core.Shape{B, e, H, W}}
	for s := range B {
		mean.Data = append(mean.Data, m.Data[s*2*e*H*W:s*2*e*H*W+e*H*W]...)
	}
	dec := o.Download(p.V.Decode(o, o.Upload(mean)))
	testutil.RelClose(t, "vae.decode_mean", dec.Data, g.F32("vae.decode_mean").Data, relTol)
	if g.Has("vae.mar_latent_of_mean") {
		tok, err := p.Tokens(mean)
		if err != nil {
			t.Fatal(err)
		}
		testutil.RelClose(t, "vae.mar_latent_of_mean", tok, g.F32("vae.mar_latent_of_mean").Data, relTol)
	}
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
}

// replay returns the official run's orders and Gaussian draws, in the order the sampler asks for them.
type replay struct {
	orders [][]int
	draws  [][]float32
}

func (r *replay) Order(n int) []int {
	o := r.orders[0]
	r.orders = r.orders[1:]
	return o
}

func (r *replay) Normal(dst []float32) {
	if len(r.draws) == 0 {
		panic("martest: the sampler drew more noise than the official run")
	}
	copy(dst, r.draws[0]) // with guidance the recorded draw has both halves' rows: the first are used
	r.draws = r.draws[1:]
}

func newReplay(t *testing.T, g *testutil.Golden, run Run) *replay {
	r := &replay{}
	ord := g.Ints(run.Name + ".orders")
	L := len(ord) / run.B
	for b := range run.B {
		r.orders = append(r.orders, ord[b*L:(b+1)*L])
	}
	for it := range run.Iters {
		p := fmt.Sprintf("%s.it%d.", run.Name, it)
		r.draws = append(r.draws, g.F32(p+"noise_init").Data)
		steps := g.F32(p + "noise_steps")
		per := len(steps.Data) / steps.Shape[0]
		for s := range steps.Shape[0] {
			r.draws = append(r.draws, steps.Data[s*per:(s+1)*per])
		}
	}
	return r
}

func checkRun(t *testing.T, p *mar.Pipeline, g *testutil.Golden, b core.Backend, run Run) {
	cfg := p.M.Config()
	labels := run.Labels
	if labels == nil {
		for range run.B {
			labels = append(labels, cfg.Classes)
		}
	}
	testutil.IntsEqual(t, run.Name+".labels", labels, labelsOf(g, run, cfg.Classes))
	sched, err := mar.ParseCFGSchedule(run.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	if g.Has("diff.timestep_map") {
		steps = len(g.Ints("diff.timestep_map"))
	}
	o := core.NewOps(b)
	taps := map[string][]float32{}
	o.OnTap = func(name string, x *core.Tensor) {
		h, err := b.Download(x)
		if err == nil {
			taps[name] = h.Data
		}
	}
	req := mar.Request{Labels: labels, Rand: newReplay(t, g, run),
		Sampling: mar.Sampling{Iters: run.Iters, DiffSteps: steps, CFG: run.CFG, Schedule: sched, Temperature: run.Temperature}}
	req.OnIteration = func(it mar.Iteration) error {
		pre := fmt.Sprintf("%s.it%d.", run.Name, it.Index)
		if ml := g.F32(pre + "mask_len").Data[0]; float32(it.MaskLen) != ml {
			t.Errorf("%smask_len = %d, want %v", pre, it.MaskLen, ml)
		}
		testutil.IntsEqual(t, pre+"mask_to_pred", bits(it.Predicted), g.Ints(pre+"mask_to_pred"))
		if want := g.F32(pre + "cfg_iter").Data[0]; math.Abs(float64(it.CFG-want)) > 1e-6 {
			t.Errorf("%scfg_iter = %v, want %v", pre, it.CFG, want)
		}
		n := len(it.Sampled) / cfg.Ct
		testutil.RelClose(t, pre+"sampled", it.Sampled, g.F32(pre + "sampled").Data[:n*cfg.Ct], sampleTol)
		return nil
	}
	if run.Detailed {
		req.OnDiffStep = func(iter, i int, netIn, netOut []float32, out mar.StepOut) {
			pre := fmt.Sprintf("%s.it%d.d.", run.Name, iter)
			k := steps - 1 - i // loop order
			sl := func(name string, rows int) []float32 {
				h := g.F32(pre + name)
				per := len(h.Data) / h.Shape[0]
				return h.Data[k*per : k*per+rows]
			}
			testutil.RelClose(t, fmt.Sprintf("%snet_out[%d]", pre, k), netOut, sl("net_out", len(netOut)), sampleTol)
			for _, v := range []struct {
				name string
				got  []float32
			}{{"mean", out.Mean}, {"log_variance", out.LogVariance}, {"pred_xstart", out.PredXStart}, {"sample", out.Sample}} {
				testutil.RelClose(t, fmt.Sprintf("%s%s[%d]", pre, v.name, k), v.got, sl(v.name, len(v.got)), sampleTol)
			}
		}
	}
	tokens, err := p.Run(context.Background(), o, req)
	if err != nil {
		t.Fatal(err)
	}
	for it := range run.Iters {
		pre := fmt.Sprintf("%s.it%d.", run.Name, it)
		for _, name := range []string{"enc_out", "dec_out", "z_pred"} {
			got, ok := taps[fmt.Sprintf("mar.it%d.%s", it, name)]
			if !ok {
				t.Errorf("no %s tapped at iteration %d", name, it)
				continue
			}
			// Iterations after the first see tokens sampled through the diffusion head.
			tol := relTol
			if it > 0 {
				tol = sampleTol
			}
			testutil.RelClose(t, pre+name, got, g.F32(pre+name).Data, tol)
		}
	}
	testutil.RelClose(t, run.Name+".tokens_seq", tokens, g.F32(run.Name+".tokens_seq").Data, sampleTol)
	img := o.Download(p.Decode(o, tokens, run.B))
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	testutil.RelClose(t, run.Name+".img", img.Data, g.F32(run.Name+".img").Data, sampleTol)
}

func labelsOf(g *testutil.Golden, run Run, classes int) []int {
	if g.Has(run.Name + ".labels") {
		return g.Ints(run.Name + ".labels")
	}
	out := make([]int, run.B)
	for i := range out {
		out[i] = classes
	}
	return out
}

func bits(m [][]bool) []int {
	var out []int
	for _, r := range m {
		for _, v := range r {
			if v {
				out = append(out, 1)
			} else {
				out = append(out, 0)
			}
		}
	}
	return out
}
