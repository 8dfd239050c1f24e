package mar

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/webvar/webvar/core"
)

// Pipeline is a MAR model and its VAE: class labels in, images out.
type Pipeline struct {
	M     *Model
	V     *VAE
	Patch int // patch_size: a token is a Patch x Patch block of VAE latent pixels
	// Scale is the latent scale: tokens are VAE latents times Scale (ScaleFactor for the released KL-16; a
	// VAE trained for webvar records its own, Options.VAEScale).
	Scale float32
}

// LoadPipeline loads the transformer and the VAE (opt: the head counts, see Options).
func LoadPipeline(marSrc, vaeSrc core.WeightSource, b core.Backend, opt Options) (*Pipeline, error) {
	m, err := Load(core.NewWeights(marSrc, b), opt)
	if err != nil {
		return nil, err
	}
	vw := core.NewWeights(vaeSrc, b)
	v, err := LoadVAE(vw)
	if err != nil {
		return nil, err
	}
	if err := vw.CheckAllUsed("a KL VAE checkpoint"); err != nil {
		return nil, fmt.Errorf("mar vae: %w", err)
	}
	p, err := NewPipeline(m, v)
	if err != nil {
		return nil, err
	}
	if opt.VAEScale != 0 {
		if !(opt.VAEScale > 0) || math.IsInf(opt.VAEScale, 0) {
			return nil, fmt.Errorf("mar: VAE scale %v: want a positive number", opt.VAEScale)
		}
		p.Scale = float32(opt.VAEScale)
	}
	return p, nil
}

// NewPipeline pairs a model with its VAE, deriving the patch size from the token width.
func NewPipeline(m *Model, v *VAE) (*Pipeline, error) {
	ct, e := m.cfg.Ct, v.cfg.Embed
	p := int(math.Round(math.Sqrt(float64(ct) / float64(e))))
	if p < 1 || p*p*e != ct {
		return nil, fmt.Errorf("mar: tokens of %d values do not split into patches of the VAE's %d-channel latents", ct, e)
	}
	return &Pipeline{M: m, V: v, Patch: p, Scale: ScaleFactor}, nil
}

// ImageSize is the side of the generated images.
func (p *Pipeline) ImageSize() int { return p.M.cfg.SeqH * p.Patch * p.V.cfg.Downsample() }

// CFGSchedule is how the guidance scale grows over the iterations.
type CFGSchedule int

const (
	// CFGLinear is the official default: 1 + (cfg-1) * (SeqLen - mask_len)/SeqLen, from the next
	// iteration's mask_len.
	CFGLinear CFGSchedule = iota
	// CFGConstant uses cfg at every iteration.
	CFGConstant
)

func (s CFGSchedule) String() string {
	if s == CFGConstant {
		return "constant"
	}
	return "linear"
}

// ParseCFGSchedule maps "linear" or "constant" to its schedule.
func ParseCFGSchedule(s string) (CFGSchedule, error) {
	switch s {
	case "linear", "":
		return CFGLinear, nil
	case "constant":
		return CFGConstant, nil
	}
	return 0, fmt.Errorf("cfg schedule %q: want linear or constant", s)
}

// Sampling is sample_tokens' arguments.
type Sampling struct {
	Iters       int     // num_iter: AR iterations
	DiffSteps   int     // num_sampling_steps of the diffusion head (respaced)
	CFG         float64 // 1: no guidance (no unconditional rows run at all)
	Schedule    CFGSchedule
	Temperature float64
}

// OfficialSampling are the official settings (main_mar.py's 64 iterations and 100 diffusion steps,
// temperature 1.0, and MAR-B's published guidance: cfg 2.9, linear schedule).
var OfficialSampling = Sampling{Iters: 64, DiffSteps: 100, CFG: 2.9, Schedule: CFGLinear, Temperature: 1.0}

// Randomness supplies a generation's random draws: webvar's seeded RNG (NewRandom), or recorded draws
// of the official code (tests replay them).
type Randomness interface {
	// Order is the generation order of one sample: a permutation of 0..seqLen-1.
	Order(seqLen int) []int
	// Normal fills dst with standard normal draws. Each diffusion loop draws its initial x_T (rows of
	// the conditional half only) and then one draw per step for those rows.
	Normal(dst []float32)
}

type seeded struct{ r *core.RNG }

// NewRandom is webvar's own randomness: a shuffle and Box-Muller normals from core.RNG(seed). The same
// seed gives the same image on the same backend.
func NewRandom(seed uint64) Randomness { return seeded{core.NewRNG(seed)} }

func (s seeded) Order(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := s.r.Intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

func (s seeded) Normal(dst []float32) {
	for i := range dst {
		dst[i] = float32(s.r.Normal())
	}
}

// Iteration is what one AR iteration did, for progress and for tests.
type Iteration struct {
	Index, Count int
	MaskIn       [][]bool // per sample, true = still to generate, entering the iteration
	MaskLen      int      // tokens left masked after it
	Predicted    [][]bool // per sample: the positions sampled in it
	CFG          float32  // the guidance scale used
	Z            *core.Tensor
	Sampled      []float32 // [n, Ct]: the new tokens, row-major over (sample, position)
	Tokens       []float32 // [B, SeqLen, Ct]: every token known after it (zeros elsewhere)
}

// Request is one generation.
type Request struct {
	Labels []int // class per sample; Classes (the class count) = unconditional
	Sampling
	Rand Randomness
	// OnIteration, when set, is called after every iteration (before the next starts). Its Z is freed
	// after the call.
	OnIteration func(it Iteration) error
	// Times, when set, accumulates where the generation spent its time (with a synchronising download
	// after the transformer on asynchronous backends, so that each part gets its own time).
	Times *Times
	// OnDiffStep, when set, is called after each diffusion step of each iteration with the step's
	// respaced index i, the network's input x_t and output (before CFG mixing) and p_sample's values.
	OnDiffStep func(iter, i int, netIn, netOut []float32, out StepOut)
}

// Times are a generation's time by part.
type Times struct {
	Transformer time.Duration // MAE encoder + decoder, every iteration
	Diffusion   time.Duration // the diffusion head's sampling loops
	NetPasses   int           // diffusion network evaluations (each over every row of its iteration)
}

// MaskLen is the number of tokens still masked after iteration step of n, given how many are masked
// before it: max(1, min(masked-1, floor(seqLen * cos(pi/2 * (step+1)/n)))).
func MaskLen(seqLen, step, n, masked int) int {
	ratio := math.Cos(math.Pi / 2 * float64(step+1) / float64(n))
	l := math.Floor(float64(seqLen) * ratio)
	return int(math.Max(1, math.Min(float64(masked-1), l)))
}

// CFGAt is the guidance scale of an iteration whose next mask length is maskLen, in float32 as the
// official code computes it.
func CFGAt(s Sampling, seqLen, maskLen int) float32 {
	if s.Schedule == CFGConstant {
		return float32(s.CFG)
	}
	return 1 + float32(s.CFG-1)*float32(seqLen-maskLen)/float32(seqLen)
}

// Run generates tokens for every label and returns them [B, SeqLen, Ct] (row-major over sample,
// position; the input of unpatchify).
func (p *Pipeline) Run(ctx context.Context, o *core.Ops, req Request) ([]float32, error) {
	c := p.M.cfg
	B, L, Ct := len(req.Labels), c.SeqLen, c.Ct
	s := req.Sampling
	if B == 0 {
		return nil, fmt.Errorf("mar: no labels")
	}
	if s.Iters < 1 || s.Iters > L {
		return nil, fmt.Errorf("mar: %d iterations: want 1..%d (the tokens per image)", s.Iters, L)
	}
	if !(s.Temperature > 0) || math.IsInf(s.Temperature, 0) {
		return nil, fmt.Errorf("mar: temperature %v: want > 0", s.Temperature)
	}
	if !(s.CFG > 0) || math.IsInf(s.CFG, 0) {
		return nil, fmt.Errorf("mar: cfg %v: want > 0", s.CFG)
	}
	sched, err := NewSchedule(s.DiffSteps)
	if err != nil {
		return nil, fmt.Errorf("mar: %w", err)
	}
	rows := make([]int, 0, 2*B)
	for _, l := range req.Labels {
		r, err := p.M.classRow(l)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	guided := s.CFG != 1.0
	if guided {
		for range B {
			rows = append(rows, c.Classes)
		}
	}
	R := len(rows)
	rnd := req.Rand
	if rnd == nil {
		rnd = NewRandom(0)
	}
	orders := make([][]int, B)
	for b := range orders {
		orders[b] = rnd.Order(L)
		if err := checkOrder(orders[b], L); err != nil {
			return nil, fmt.Errorf("mar: generation order of sample %d: %w", b, err)
		}
	}
	tokens := make([]float32, B*L*Ct)
	masked := make([][]bool, B)
	for b := range masked {
		masked[b] = make([]bool, L)
		for i := range masked[b] {
			masked[b][i] = true
		}
	}
	for step := range s.Iters {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rowMasks := make([][]bool, R)
		for r := range rowMasks {
			rowMasks[r] = masked[r%B]
		}
		in := make([]float32, 0, R*L*Ct)
		for r := range R {
			b := r % B
			in = append(in, tokens[b*L*Ct:(b+1)*L*Ct]...)
		}
		t0 := time.Now()
		x := o.Upload(core.HostTensor{Shape: core.Shape{R, L, Ct}, Data: in})
		enc := p.M.Encode(o, x, rowMasks, rows)
		o.Free(x)
		o.Tap(fmt.Sprintf("mar.it%d.enc_out", step), enc)
		z := p.M.Decode(o, enc, rowMasks)
		o.Free(enc)
		o.Tap(fmt.Sprintf("mar.it%d.dec_out", step), z)

		count := 0
		for _, m := range masked[0] {
			if m {
				count++
			}
		}
		maskLen := MaskLen(L, step, s.Iters, count)
		pred := make([][]bool, B)
		next := make([][]bool, B)
		for b := range B {
			next[b] = make([]bool, L)
			for _, pos := range orders[b][:maskLen] {
				next[b][pos] = true
			}
			pred[b] = make([]bool, L)
			for i := range L {
				if step >= s.Iters-1 {
					pred[b][i] = masked[b][i]
				} else {
					pred[b][i] = masked[b][i] != next[b][i]
				}
			}
		}
		// z rows of the predicted positions, row-major over (row, position): conditional rows, then
		// the unconditional ones.
		var ids []int
		for r := range R {
			for i, yes := range pred[r%B] {
				if yes {
					ids = append(ids, r*L+i)
				}
			}
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("mar: iteration %d predicts no tokens", step)
		}
		zp := o.Embedding(o.Reshape(z, R*L, c.Dec.C), ids)
		o.Free(z)
		o.Tap(fmt.Sprintf("mar.it%d.z_pred", step), zp)
		if req.Times != nil {
			if o.Asynchronous() {
				o.Download(o.Reshape(zp, zp.Dim(0)*zp.Dim(1))) // wait for the transformer
			}
			req.Times.Transformer += time.Since(t0)
			t0 = time.Now()
		}
		cfg := float32(1)
		if guided {
			cfg = CFGAt(s, L, maskLen)
		}
		var onStep func(i int, netIn, netOut []float32, out StepOut)
		if req.OnDiffStep != nil {
			it := step
			onStep = func(i int, netIn, netOut []float32, out StepOut) { req.OnDiffStep(it, i, netIn, netOut, out) }
		}
		sampled, err := p.sampleDiffusion(ctx, o, zp, sched, guided, cfg, float32(s.Temperature), rnd, onStep)
		if err != nil {
			o.Free(zp)
			return nil, err
		}
		if req.Times != nil {
			req.Times.Diffusion += time.Since(t0)
			req.Times.NetPasses += sched.Steps()
		}
		// Write the new tokens back in the same (sample, position) order.
		k := 0
		for b := range B {
			for i, yes := range pred[b] {
				if yes {
					copy(tokens[(b*L+i)*Ct:(b*L+i+1)*Ct], sampled[k*Ct:(k+1)*Ct])
					k++
				}
			}
		}
		if req.OnIteration != nil {
			err := req.OnIteration(Iteration{Index: step, Count: s.Iters, MaskIn: masked, MaskLen: maskLen,
				Predicted: pred, CFG: cfg, Z: zp, Sampled: sampled, Tokens: tokens})
			if err != nil {
				o.Free(zp)
				return nil, err
			}
		}
		o.Free(zp)
		masked = next
		if err := o.Err(); err != nil {
			return nil, err
		}
	}
	return tokens, o.Err()
}

// sampleDiffusion is DiffLoss.sample: for the conditions zp [R*n... rows, Cdec] (with guidance the
// conditional rows then as many unconditional ones), the p_sample loop from x_T ~ N(0, I) through every
// respaced step; returns the conditional rows' samples [n, Ct].
func (p *Pipeline) sampleDiffusion(ctx context.Context, o *core.Ops, zp *core.Tensor, s *Schedule, guided bool, cfg, temp float32, rnd Randomness, onStep func(int, []float32, []float32, StepOut)) ([]float32, error) {
	if zp == nil {
		return nil, o.Err()
	}
	Ct := p.M.cfg.Ct
	rowsAll := zp.Dim(0)
	n := rowsAll
	if guided {
		n = rowsAll / 2
	}
	net := p.M.net
	cond := net.Cond(o, zp)
	defer o.Free(cond)
	// The whole loop stays on the backend: the noise goes up, nothing comes back until the end (unless a
	// test watches the steps).
	host := make([]float32, n*Ct)
	rnd.Normal(host)
	x := o.Upload(core.HostTensor{Shape: core.Shape{n, Ct}, Data: host})
	for i := s.Steps() - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			o.Free(x)
			return nil, err
		}
		in := x
		if guided {
			in = o.Concat(0, x, x)
		}
		outT := net.Forward(o, in, []int{s.TimestepMap[i]}, cond)
		rnd.Normal(host)
		noise := o.Upload(core.HostTensor{Shape: core.Shape{n, Ct}, Data: host})
		next := o.DDPMStep(x, outT, noise, s.Coefs(i, guided, cfg, temp))
		if onStep != nil {
			netIn, netOut, xh := o.Download(in).Data, o.Download(outT).Data, o.Download(x).Data
			out := s.PSample(i, xh, netOut, host, Ct, guided, cfg, temp)
			out.Sample = o.Download(next).Data // the backend's own step
			onStep(i, netIn, netOut, out)
		}
		if in != x {
			o.Free(in)
		}
		o.Free(outT, noise, x)
		x = next
		if err := o.Err(); err != nil {
			return nil, err
		}
	}
	res := o.Download(x).Data
	o.Free(x)
	return res, o.Err()
}

// Coefs are respaced step i's coefficients for core.Backend.DDPMStep (each table value cast to float32,
// as the official code's _extract_into_tensor does).
func (s *Schedule) Coefs(i int, guided bool, cfg, temperature float32) core.DDPMCoefs {
	f := func(v []float64) float32 { return float32(v[i]) }
	c := core.DDPMCoefs{Guided: guided, CFG: cfg, SqrtRecipAcp: f(s.SqrtRecipAlphasCumprod), SqrtRecipm1Acp: f(s.SqrtRecipm1AlphasCumprod),
		Coef1: f(s.PosteriorMeanCoef1), Coef2: f(s.PosteriorMeanCoef2), MinLog: f(s.PosteriorLogVarClipped), MaxLog: f(s.LogBetas),
		Temperature: temperature}
	if i != 0 {
		c.Nonzero = 1
	}
	return c
}

func checkOrder(order []int, n int) error {
	if len(order) != n {
		return fmt.Errorf("%d positions, want %d", len(order), n)
	}
	seen := make([]bool, n)
	for _, v := range order {
		if v < 0 || v >= n || seen[v] {
			return fmt.Errorf("not a permutation of 0..%d", n-1)
		}
		seen[v] = true
	}
	return nil
}

// Latents turns tokens [B, SeqLen, Ct] into VAE latents [B, Embed, h*p, w*p] divided by the scale
// (unpatchify: each token is its patch's values channel-major, (c, p, q)).
func (p *Pipeline) Latents(tokens []float32, b int) core.HostTensor {
	c := p.M.cfg
	e, P, h := p.V.cfg.Embed, p.Patch, c.SeqH
	side := h * P
	out := make([]float32, b*e*side*side)
	for s := range b {
		for ty := range h {
			for tx := range h {
				tok := tokens[((s*h+ty)*h+tx)*c.Ct:]
				for ch := range e {
					for py := range P {
						for px := range P {
							v := tok[(ch*P+py)*P+px]
							out[((s*e+ch)*side+ty*P+py)*side+tx*P+px] = v / p.Scale
						}
					}
				}
			}
		}
	}
	return core.HostTensor{Shape: core.Shape{b, e, side, side}, Data: out}
}

// Decode turns tokens [B, SeqLen, Ct] into images [B, 3, H, W] (about [-1, 1], not clamped).
func (p *Pipeline) Decode(o *core.Ops, tokens []float32, b int) *core.Tensor {
	z := o.Upload(p.Latents(tokens, b))
	img := p.V.Decode(o, z)
	o.Free(z)
	return img
}

// Tokens is patchify(latent * scale) for VAE latents [B, Embed, h*p, w*p] (a Gaussian's mean, for
// an image input): [B, SeqLen, Ct], each token its patch's values channel-major.
func (p *Pipeline) Tokens(latent core.HostTensor) ([]float32, error) {
	c := p.M.cfg
	e, P, h := p.V.cfg.Embed, p.Patch, c.SeqH
	side := h * P
	if len(latent.Shape) != 4 || latent.Shape[1] != e || latent.Shape[2] != side || latent.Shape[3] != side {
		return nil, fmt.Errorf("mar: latent %v, want [B, %d, %d, %d]", latent.Shape, e, side, side)
	}
	b := latent.Shape[0]
	out := make([]float32, b*c.SeqLen*c.Ct)
	for s := range b {
		for ty := range h {
			for tx := range h {
				tok := out[((s*h+ty)*h+tx)*c.Ct:]
				for ch := range e {
					for py := range P {
						for px := range P {
							tok[(ch*P+py)*P+px] = latent.Data[((s*e+ch)*side+ty*P+py)*side+tx*P+px] * p.Scale
						}
					}
				}
			}
		}
	}
	return out, nil
}

// FLOPs counts a generation's matrix arithmetic for B images (2 per multiply-add; Linear layers and
// attention's two products): the MAE encoder and decoder over every iteration, and the diffusion head's
// passes. Norms, activations and the host's sampling are left out.
func (p *Pipeline) FLOPs(s Sampling, B int) (transformer, diffusion int64) {
	c := p.M.cfg
	rows := int64(B)
	if s.CFG != 1.0 {
		rows *= 2
	}
	block := func(cfg nnShape, tokens int64) int64 {
		C, F := int64(cfg.C), int64(cfg.FFN)
		return rows * (2*tokens*(4*C*C+2*C*F) + 4*tokens*tokens*C)
	}
	masked := c.SeqLen
	steps := int64(s.DiffSteps)
	W, D, Ct, F := int64(c.DiffW), int64(c.Dec.C), int64(c.Ct), int64(c.FreqSize)
	// Per row and pass: input_proj, each res block's two W x W Linears and its 3W x W adaLN, the final
	// adaLN (2W x W) and Linear (2Ct x W); per pass: the time embedding (F x W, W x W).
	perRow := 2 * (W*Ct + 5*W*W*int64(c.DiffDepth) + 2*W*W + 2*W*Ct)
	perPass := 2 * (F*W + W*W)
	for step := range s.Iters {
		known := int64(c.SeqLen - masked)
		P := int64(c.Buffer)
		transformer += int64(c.Enc.Depth) * block(nnShape{c.Enc.C, c.Enc.FFN}, P+known)
		transformer += rows * 2 * (P + known) * int64(c.Enc.C) * D // decoder_embed
		transformer += int64(c.Dec.Depth) * block(nnShape{c.Dec.C, c.Dec.FFN}, P+int64(c.SeqLen))
		ml := MaskLen(c.SeqLen, step, s.Iters, masked)
		n := int64(masked - ml)
		if step == s.Iters-1 {
			n = int64(masked)
		}
		pr := n * rows              // diffusion rows of this iteration
		diffusion += pr * 2 * D * W // cond_embed, once per iteration
		diffusion += steps * (pr*perRow + perPass)
		masked = ml
	}
	return transformer, diffusion
}

type nnShape struct{ C, FFN int }
