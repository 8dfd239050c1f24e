package mar

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// TrainSteps is the length of the diffusion process the networks were trained on.
const TrainSteps = 1000

// Schedule is the respaced cosine diffusion of MAR's sampler (create_diffusion(timestep_respacing="N",
// noise_schedule="cosine"), LEARNED_RANGE variance, epsilon prediction), its tables in float64 as the
// official code keeps them; each is cast to float32 where it is used.
type Schedule struct {
	TimestepMap              []int // respaced index i -> the timestep the network receives
	Betas                    []float64
	AlphasCumprod            []float64
	AlphasCumprodPrev        []float64
	SqrtRecipAlphasCumprod   []float64
	SqrtRecipm1AlphasCumprod []float64
	PosteriorVariance        []float64
	PosteriorLogVarClipped   []float64
	PosteriorMeanCoef1       []float64
	PosteriorMeanCoef2       []float64
	LogBetas                 []float64
}

// Steps is the number of respaced steps.
func (s *Schedule) Steps() int { return len(s.Betas) }

// CosineBetas is the 1000-step cosine schedule: beta_i = min(1 - abar((i+1)/T)/abar(i/T), 0.999) with
// abar(t) = cos((t + 0.008)/1.008 * pi/2)^2.
func CosineBetas(T int) []float64 {
	abar := func(t float64) float64 { c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2); return c * c }
	b := make([]float64, T)
	for i := range b {
		t1, t2 := float64(i)/float64(T), float64(i+1)/float64(T)
		b[i] = math.Min(1-abar(t2)/abar(t1), 0.999)
	}
	return b
}

// SpacedTimesteps is space_timesteps(T, "N"): N timesteps spread evenly over [0, T-1], by a stride
// (T-1)/(N-1) added up in float64 and rounded half to even as Python's round does.
func SpacedTimesteps(T, n int) ([]int, error) {
	if n < 1 || n > T {
		return nil, fmt.Errorf("diffusion steps %d: want 1..%d", n, T)
	}
	stride := 1.0
	if n > 1 {
		stride = float64(T-1) / float64(n-1)
	}
	out := make([]int, 0, n)
	cur := 0.0
	for range n {
		t := int(math.RoundToEven(cur))
		if len(out) == 0 || t != out[len(out)-1] {
			out = append(out, t)
		}
		cur += stride
	}
	return out, nil
}

// NewSchedule builds the respaced schedule of n sampling steps.
// It needs 2 <= n <= TrainSteps: with one step the official sampler fails (its clipped posterior
// log-variance table is built from the second step's variance).
func NewSchedule(n int) (*Schedule, error) {
	if n < 2 || n > TrainSteps {
		return nil, fmt.Errorf("diffusion steps %d: want 2..%d (the official sampler fails at 1)", n, TrainSteps)
	}
	use, err := SpacedTimesteps(TrainSteps, n)
	if err != nil {
		return nil, err
	}
	base := CosineBetas(TrainSteps)
	// The base process's cumulative products, then the respaced betas from their ratios.
	s := &Schedule{}
	acp, last := 1.0, 1.0
	j := 0
	for i, b := range base {
		acp *= 1 - b
		if j < len(use) && use[j] == i {
			s.Betas = append(s.Betas, 1-acp/last)
			last = acp
			s.TimestepMap = append(s.TimestepMap, i)
			j++
		}
	}
	N := len(s.Betas)
	s.AlphasCumprod = make([]float64, N)
	s.AlphasCumprodPrev = make([]float64, N)
	s.SqrtRecipAlphasCumprod = make([]float64, N)
	s.SqrtRecipm1AlphasCumprod = make([]float64, N)
	s.PosteriorVariance = make([]float64, N)
	s.PosteriorLogVarClipped = make([]float64, N)
	s.PosteriorMeanCoef1 = make([]float64, N)
	s.PosteriorMeanCoef2 = make([]float64, N)
	s.LogBetas = make([]float64, N)
	p := 1.0
	for i, b := range s.Betas {
		p *= 1 - b
		s.AlphasCumprod[i] = p
	}
	for i, b := range s.Betas {
		acp, prev := s.AlphasCumprod[i], 1.0
		if i > 0 {
			prev = s.AlphasCumprod[i-1]
		}
		s.AlphasCumprodPrev[i] = prev
		s.SqrtRecipAlphasCumprod[i] = math.Sqrt(1 / acp)
		s.SqrtRecipm1AlphasCumprod[i] = math.Sqrt(1/acp - 1)
		s.PosteriorVariance[i] = b * (1 - prev) / (1 - acp)
		s.PosteriorMeanCoef1[i] = b * math.Sqrt(prev) / (1 - acp)
		s.PosteriorMeanCoef2[i] = (1 - prev) * math.Sqrt(1-b) / (1 - acp)
		s.LogBetas[i] = math.Log(b)
	}
	for i := range N {
		// log(append(posterior_variance[1], posterior_variance[1:])): step 0's variance is 0.
		v := s.PosteriorVariance[i]
		if i == 0 {
			v = s.PosteriorVariance[1]
		}
		s.PosteriorLogVarClipped[i] = math.Log(v)
	}
	return s, nil
}

// TimestepFreqs is the sinusoid of TimestepEmbedder.timestep_embedding for timestep t (size even):
// cat([cos(t*f), sin(t*f)]) with f_i = exp(-ln(10000) * i / (size/2)), in float32 as the official code.
func TimestepFreqs(t int, size int) []float32 {
	half := size / 2
	out := make([]float32, size)
	lnMax := float32(-math.Log(10000))
	for i := range half {
		f := float32(math.Exp(float64(lnMax * float32(i) / float32(half))))
		a := float32(t) * f
		out[i] = float32(math.Cos(float64(a)))
		out[half+i] = float32(math.Sin(float64(a)))
	}
	return out
}

// DiffNet is SimpleMLPAdaLN, the diffusion head's network: eps and the variance interpolation values of
// x_t given the timestep and the transformer's condition z.
type DiffNet struct {
	cfg                  Config
	timeFC1, timeFC2     nn.Linear
	condEmbed, inputProj nn.Linear
	blocks               []diffBlock
	finalAda             nn.Linear // [2W, W]: shift, scale
	finalLinear          nn.Linear // [2Ct, W]
}

type diffBlock struct {
	inLN     nn.LayerNorm
	fc1, fc2 nn.Linear
	ada      nn.Linear // [3W, W]: shift, scale, gate
}

func loadDiffNet(w *core.Weights, p string, c Config) (*DiffNet, error) {
	W := c.DiffW
	l := core.NewLoader(w)
	n := &DiffNet{cfg: c,
		timeFC1:     nn.LoadLinear(l, p+"time_embed.mlp.0", W, c.FreqSize, true),
		timeFC2:     nn.LoadLinear(l, p+"time_embed.mlp.2", W, W, true),
		condEmbed:   nn.LoadLinear(l, p+"cond_embed", W, c.Dec.C, true),
		inputProj:   nn.LoadLinear(l, p+"input_proj", W, c.Ct, true),
		finalAda:    nn.LoadLinear(l, p+"final_layer.adaLN_modulation.1", 2*W, W, true),
		finalLinear: nn.LoadLinear(l, p+"final_layer.linear", 2*c.Ct, W, true),
	}
	for i := range c.DiffDepth {
		b := fmt.Sprintf("%sres_blocks.%d.", p, i)
		n.blocks = append(n.blocks, diffBlock{
			inLN: nn.LoadLayerNorm(l, b+"in_ln", W, 1e-6),
			fc1:  nn.LoadLinear(l, b+"mlp.0", W, W, true),
			fc2:  nn.LoadLinear(l, b+"mlp.2", W, W, true),
			ada:  nn.LoadLinear(l, b+"adaLN_modulation.1", 3*W, W, true),
		})
	}
	return n, l.Err()
}

// Cond is the part of the network's input that stays fixed over a sampling loop: cond_embed(z) for the
// rows' conditions z [N, Cdec].
func (n *DiffNet) Cond(o *core.Ops, z *core.Tensor) *core.Tensor { return n.condEmbed.Apply(o, z) }

// TimeEmbed is time_embed(t) = Linear(SiLU(Linear(sinusoid(t)))) for each timestep of ts: [len(ts), W].
func (n *DiffNet) TimeEmbed(o *core.Ops, ts []int) *core.Tensor {
	F := n.cfg.FreqSize
	freq := make([]float32, 0, len(ts)*F)
	for _, t := range ts {
		freq = append(freq, TimestepFreqs(t, F)...)
	}
	f := o.Upload(core.HostTensor{Shape: core.Shape{len(ts), F}, Data: freq})
	t1 := n.timeFC1.Apply(o, f)
	t1s := o.SiLU(t1)
	o.Free(f, t1)
	temb := n.timeFC2.Apply(o, t1s)
	o.Free(t1s)
	return temb
}

// Forward is SimpleMLPAdaLN.forward(x, t, c) for x [N, Ct] at timesteps ts (the original, un-respaced
// ones: one per row, or a single one for every row) with cond = Cond(z) [N, W]: [N, 2Ct], eps then the
// variance values.
func (n *DiffNet) Forward(o *core.Ops, x *core.Tensor, ts []int, cond *core.Tensor) *core.Tensor {
	W := n.cfg.DiffW
	N := x.Dim(0)
	if len(ts) != 1 && len(ts) != N {
		o.Fail("mar diffusion", fmt.Errorf("%d timesteps for %d rows", len(ts), N))
		return nil
	}
	temb := n.TimeEmbed(o, ts)
	if len(ts) == 1 {
		temb = o.Reshape(temb, W) // broadcast over the rows: the same sums as N equal rows
	}
	y := o.Add(cond, temb) // t + c
	o.Free(temb)
	ys := o.SiLU(y) // every adaLN_modulation starts with SiLU
	o.Free(y)
	h := o.Reshape(n.inputProj.Apply(o, x), N, 1, W)
	for _, b := range n.blocks {
		a := b.ada.Apply(o, ys) // [N, 3W]
		shift, scale, gate := o.SliceLast(a, 0, W), o.SliceLast(a, W, W), o.SliceLast(a, 2*W, W)
		o.Free(a)
		ln := b.inLN.Apply(o, h)
		mod := o.Modulate(ln, scale, shift)
		o.Free(ln)
		f1 := b.fc1.Apply(o, mod)
		o.Free(mod)
		f1s := o.SiLU(f1)
		o.Free(f1)
		f2 := b.fc2.Apply(o, f1s)
		o.Free(f1s)
		h2 := o.AddMulRows(h, f2, gate)
		o.Free(h, f2, shift, scale, gate)
		h = h2
	}
	a := n.finalAda.Apply(o, ys) // [N, 2W]
	shift, scale := o.SliceLast(a, 0, W), o.SliceLast(a, W, W)
	o.Free(a, ys)
	ln := o.LayerNorm(h, 1e-6)
	o.Free(h)
	mod := o.Modulate(ln, scale, shift)
	o.Free(ln, shift, scale)
	out := n.finalLinear.Apply(o, mod)
	o.Free(mod)
	return o.Reshape(out, N, 2*n.cfg.Ct)
}

// StepOut is what one p_sample step computed for each row (float32, [rows*Ct] each).
type StepOut struct {
	Eps, LogVariance, PredXStart, Mean, Sample []float32
}

// PSample is p_sample at respaced step i on the host, with its intermediate values: x [n*ct], the
// network's output out [rows*2ct] (rows = 2n with guidance: conditional rows first) and the noise.
func (s *Schedule) PSample(i int, x, out, noise []float32, ct int, guided bool, cfg, temperature float32) StepOut {
	c := s.Coefs(i, guided, cfg, temperature)
	n := len(x) / ct
	o := StepOut{Eps: make([]float32, len(x)), LogVariance: make([]float32, len(x)), PredXStart: make([]float32, len(x)),
		Mean: make([]float32, len(x)), Sample: make([]float32, len(x))}
	for r := range n {
		for j := range ct {
			k := r*ct + j
			var u float32
			if guided {
				u = out[(n+r)*2*ct+j]
			}
			eps, v := out[r*2*ct+j], out[r*2*ct+ct+j]
			t := core.DDPMTermsOf(c, x[k], eps, u, v)
			o.Eps[k], o.LogVariance[k], o.PredXStart[k], o.Mean[k] = t.Eps, t.LogVar, t.X0, t.Mean
			o.Sample[k] = core.DDPMSample(c, x[k], eps, u, v, noise[k])
		}
	}
	return o
}
