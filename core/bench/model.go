package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/tensortable"
	"github.com/webvar/webvar/core/varmodel"
)

// The end-to-end benchmark: one image generated with a loaded pipeline, timed per scale and per part
// (transformer, VQVAE decode, previews), next to the arithmetic each part must do.

// ModelFLOPs is the arithmetic of one generation, counted from the architecture rather than measured:
// 2 FLOPs per multiply-add of the matrix products, which are what the time goes to: Linear layers,
// attention (q·k and p·v over the KV cache), the head and the decoder's convolutions and attention.
// Norms, activations, residual adds, biases, sampling and the quantizer's small Phi convs are left out;
// each is O(1/width) of the products (under 1% at every released size).
type ModelFLOPs struct {
	// Scales is the transformer's work per scale. Scale 0 includes the class conditioning (the AdaLN
	// linears, computed once per generation) and every scale but the last includes word_embed of the next
	// scale's input, where Pipeline.Run computes them.
	Scales      []int64
	Transformer int64 // sum of Scales
	Decode      int64 // one VQVAE decode of every image of the batch
	// Preview is the rendering of the previews of every scale but the last (the last scale's preview is
	// the final image, counted in Decode): none, (scales-1) full decodes, for fast previews one decode
	// per scale at its own latent side, for linear ones the latent-to-RGB map at every latent pixel.
	Preview int64
	Mode    varmodel.PreviewMode // as rendered (varmodel.Pipeline.EffectivePreviews)
}

// TransformerFLOPs counts the transformer's work per scale for a batch of images with classifier-free
// guidance (2 rows per image: conditional and null class), as varmodel.Pipeline.Run computes it.
func TransformerFLOPs(c varmodel.Config, images int) []int64 {
	tokens := make([]int, len(c.PatchNums))
	for i, pn := range c.PatchNums {
		tokens[i] = pn * pn
	}
	return StepFLOPs(varmodel.Tensors(c), c.Depth, c.C, tokens, images)
}

// StepFLOPs counts a VAR-style transformer's work per step whose token counts are tokens, for a batch
// of images with classifier-free guidance. The Linear products come from the model's tensor table t
// (varmodel.Tensors, flexvar.Tensors): its PerToken weights (each block's mat_qkv, proj, fc1, fc2 and
// the head) on every row of the step, at step 0 its PerClass weights (the AdaLN linears, computed once
// per generation) and at every step but the last its PerInput weight (word_embed of the next step's
// input, on the conditional rows only). Attention over the KV cache is counted from depth and width c.
func StepFLOPs(t tensortable.Table, depth, c int, tokens []int, images int) []int64 {
	B := int64(2 * images)
	C, D := int64(c), int64(depth)
	perToken, perClass, perInput := t.MACs(tensortable.PerToken), t.MACs(tensortable.PerClass), t.MACs(tensortable.PerInput)
	out := make([]int64, len(tokens))
	var seen int64 // tokens of the KV cache before this step
	for si, n := range tokens {
		l := int64(n)
		s := seen + l // keys each query attends to: all earlier steps and its own
		// Per head h: q·k is l*s*headDim multiply-adds and p·v as many; summed over heads, headDim*H = C.
		attention := 2 * 2 * B * l * s * C
		f := 2*B*l*perToken + D*attention
		if si == 0 {
			f += 2 * B * perClass
		}
		if si+1 < len(tokens) {
			f += 2 * int64(images) * int64(tokens[si+1]) * perInput
		}
		out[si] = f
		seen = s
	}
	return out
}

// DecodeFLOPs counts one VQVAE decode (post_quant_conv and the decoder) of a [images, Cvae, latent,
// latent] f_hat, walking the decoder's layers as vqvae.Load finds them in the checkpoint vae: each
// convolution is 2*Cout*Cin*k*k per output pixel, each attention block 4*HW*HW*C for its q·k and p·v
// besides its 1x1 convs.
func DecodeFLOPs(vae core.WeightSource, latent, images int) (int64, error) {
	side := int64(latent)
	var total int64
	var err error
	conv := func(name string) {
		s, ok := vae.Shape(name + ".weight")
		if err != nil {
			return
		}
		if !ok || len(s) != 4 {
			err = &core.WeightError{Tensor: name + ".weight", Msg: fmt.Sprintf("missing or not a conv (shape %v)", s)}
			return
		}
		total += 2 * int64(s[0]) * int64(s[1]*s[2]*s[3]) * side * side
	}
	has := func(name string) bool { _, ok := vae.Shape(name + ".weight"); return ok }
	attn := func(name string) {
		conv(name + ".qkv")
		conv(name + ".proj_out")
		if s, ok := vae.Shape(name + ".proj_out.weight"); ok && len(s) == 4 {
			hw := side * side
			total += 4 * hw * hw * int64(s[0])
		}
	}
	res := func(name string) {
		conv(name + ".conv1")
		conv(name + ".conv2")
		if has(name + ".nin_shortcut") {
			conv(name + ".nin_shortcut")
		}
	}
	conv("post_quant_conv")
	conv("decoder.conv_in")
	res("decoder.mid.block_1")
	if has("decoder.mid.attn_1.qkv") {
		attn("decoder.mid.attn_1")
	}
	res("decoder.mid.block_2")
	n := 0
	for has(fmt.Sprintf("decoder.up.%d.block.0.conv1", n)) {
		n++
	}
	for i := n - 1; i >= 0; i-- {
		base := fmt.Sprintf("decoder.up.%d", i)
		for j := 0; has(fmt.Sprintf("%s.block.%d.conv1", base, j)); j++ {
			res(fmt.Sprintf("%s.block.%d", base, j))
			if a := fmt.Sprintf("%s.attn.%d", base, j); has(a + ".qkv") {
				attn(a)
			}
		}
		if has(base + ".upsample.conv") {
			side *= 2 // nearest 2x, then the conv at the new size
			conv(base + ".upsample.conv")
		}
	}
	conv("decoder.conv_out")
	return total * int64(images), err
}

// CountFLOPs counts a pipeline's generation of images images with previews rendered as mode says (after
// p.EffectivePreviews); vae is the VQVAE checkpoint it was loaded from (the loaded model keeps no shapes
// to walk).
func CountFLOPs(p *varmodel.Pipeline, vae core.WeightSource, images int, mode varmodel.PreviewMode) (ModelFLOPs, error) {
	c := p.VAR.Config()
	mode = p.EffectivePreviews(mode)
	f := ModelFLOPs{Scales: TransformerFLOPs(c, images), Mode: mode}
	for _, s := range f.Scales {
		f.Transformer += s
	}
	var err error
	f.Decode, err = DecodeFLOPs(vae, c.PatchNums[len(c.PatchNums)-1], images)
	if err != nil {
		return f, err
	}
	f.Preview, err = PreviewFLOPs(vae, c.PatchNums, images, mode)
	return f, err
}

// PreviewFLOPs counts the preview rendering of one generation: nothing for PreviewNone, a full decode
// per scale but the last for PreviewFull, for PreviewFast a decode at each such scale's own side (the
// area downsampling before it and the bicubic upsampling after it are not matrix products), and for
// PreviewLinear the [3, Cvae] map at each of the P x P latent pixels of each such scale (its bilinear
// upsampling is not counted either). The decoder's work grows with the latent's area (its attention with
// the square of it), so fast previews cost about sum(pn^2)/P^2 full decodes.
func PreviewFLOPs(vae core.WeightSource, patchNums []int, images int, mode varmodel.PreviewMode) (int64, error) {
	if len(patchNums) == 0 {
		return 0, errors.New("bench: no scales")
	}
	switch mode {
	case varmodel.PreviewNone:
		return 0, nil
	case varmodel.PreviewLinear:
		es, ok := vae.Shape("quantize.embedding.weight")
		if !ok || len(es) != 2 {
			return 0, &core.WeightError{Tensor: "quantize.embedding.weight", Msg: fmt.Sprintf("missing or not [V, Cvae] (shape %v)", es)}
		}
		p := int64(patchNums[len(patchNums)-1])
		return int64(len(patchNums)-1) * 2 * 3 * int64(es[1]) * p * p * int64(images), nil
	case varmodel.PreviewFast, varmodel.PreviewFull:
	default:
		return 0, fmt.Errorf("bench: preview mode %v", mode)
	}
	var total int64
	for _, pn := range patchNums[:len(patchNums)-1] {
		side := pn
		if mode == varmodel.PreviewFull {
			side = patchNums[len(patchNums)-1]
		}
		f, err := DecodeFLOPs(vae, side, images)
		if err != nil {
			return 0, err
		}
		total += f
	}
	return total, nil
}

// ModelRun is the timing of one generation. On a queueing backend every part ends with a readback
// (the logits of each scale, the decoded image), so each part's time includes finishing its device work.
type ModelRun struct {
	Total time.Duration // from the request to the final image on the host
	// Scales is the transformer part of each scale: blocks, head, reading the logits back, sampling and
	// the f_hat update; decoding is excluded.
	Scales      []time.Duration
	Transformer time.Duration // sum of Scales
	Decode      time.Duration // decoding the final image
	Preview     time.Duration // decoding the previews of the other scales (Request.Previews)
}

// ModelOptions configure RunModel.
type ModelOptions struct {
	// Request is generated once untimed (pipelines compile, buffer pools fill) and then Reps times.
	Request varmodel.Request
	Reps    int              // timed runs, at least 1
	Log     io.Writer        // progress, when set
	Now     func() time.Time // the clock; nil is time.Now (tests may fake it)
	// Timed, when set, is called once just before the first timed run (after the warm-up): a caller
	// reading counters of its own (webgpu.HostTimes) takes them there.
	Timed func()
}

// RunModel times opt.Request on p and b: one warm-up run, then opt.Reps timed runs. Each run's final
// image is checked to be finite, so that a benchmark of a broken backend or model fails instead of
// reporting the speed of NaNs.
func RunModel(ctx context.Context, b core.Backend, p *varmodel.Pipeline, opt ModelOptions) ([]ModelRun, error) {
	return runTimed(b.Name(), opt.Reps, opt.Log, opt.Timed, func(onStep func(index, count int, decode time.Duration)) (core.HostTensor, error) {
		res, err := p.Generate(ctx, b, opt.Request, func(ev varmodel.ScaleEvent) error {
			onStep(ev.Scale, ev.Scales, ev.Decode)
			return nil
		})
		if err != nil {
			return core.HostTensor{}, err
		}
		return res.Images, nil
	})
}

// GeneratorOptions configure RunGenerator; the fields are ModelOptions'.
type GeneratorOptions struct {
	Request gen.Request
	Reps    int
	Log     io.Writer
	Timed   func()
}

// RunGenerator is RunModel for a generator of any family (gen.Generator): one warm-up, then opt.Reps
// timed runs, each step's time split into the transformer's and its image's (gen.Step.Decode; the last
// step's is the final decode, earlier ones are previews).
func RunGenerator(ctx context.Context, backend string, g gen.Generator, opt GeneratorOptions) ([]ModelRun, error) {
	return runTimed(backend, opt.Reps, opt.Log, opt.Timed, func(onStep func(index, count int, decode time.Duration)) (core.HostTensor, error) {
		res, err := g.Generate(ctx, opt.Request, func(st gen.Step) error {
			onStep(st.Index, st.Count, st.Decode)
			return nil
		})
		if err != nil {
			return core.HostTensor{}, err
		}
		return res.Images, nil
	})
}

// runTimed runs generate once untimed and reps times timed. generate reports each finished step (its
// index, the step count and the part of it spent decoding) through onStep and returns the final images,
// which must be finite: a benchmark of a broken backend or model fails instead of reporting the speed of
// NaNs.
func runTimed(backend string, reps int, log io.Writer, timed func(),
	generate func(onStep func(index, count int, decode time.Duration)) (core.HostTensor, error)) ([]ModelRun, error) {
	if reps < 1 {
		return nil, fmt.Errorf("bench: reps %d: want >= 1", reps)
	}
	var runs []ModelRun
	for i := 0; i <= reps; i++ {
		if log != nil {
			what := "warm-up"
			if i > 0 {
				what = fmt.Sprintf("run %d/%d", i, reps)
			}
			fmt.Fprintf(log, "bench %s: %s\n", backend, what)
		}
		if i == 1 && timed != nil {
			timed()
		}
		r := ModelRun{}
		start := time.Now()
		last := start
		images, err := generate(func(index, count int, decode time.Duration) {
			t := time.Now()
			step := t.Sub(last) - decode
			last = t
			r.Scales = append(r.Scales, step)
			r.Transformer += step
			if index == count-1 {
				r.Decode = decode
			} else {
				r.Preview += decode
			}
		})
		r.Total = time.Now().Sub(start)
		if err != nil {
			return nil, err
		}
		for j, v := range images.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("bench: the generated image has a non-finite value at element %d", j)
			}
		}
		if i > 0 {
			runs = append(runs, r)
		}
	}
	return runs, nil
}

// ModelReport is the result of `webvar bench -model`: the median over the timed runs of each time (and
// the minimum of the main ones), the arithmetic of each part and what it achieved. The JSON field names
// are part of the `webvar bench -json` output. The command fills in what the harness cannot know
// (model, device, memory, download size).
type ModelReport struct {
	Model  string `json:"model"`
	Family string `json:"family"` // "var", "flexvar"
	// Sampling is the generation's settings in words ("cfg 4, top-k 900, top-p 0.95").
	Sampling string `json:"sampling"`
	Backend  string `json:"backend"`
	Device   string `json:"device"`
	Quant    string `json:"quant"`
	// VAEQuant is the storage of the VQVAE decoder's conv weights (webvar convert -vae-quant).
	VAEQuant string `json:"vae_quant,omitempty"`
	Threads  int    `json:"threads"`
	// Previews is the mode rendered (a model without a linear map renders "fast" for "linear"): "none";
	// "full": every scale decoded at full resolution; "fast": every scale decoded at its own resolution
	// and upsampled (varmodel.PreviewFast); "linear": the model's latent-to-RGB map, upsampled
	// (varmodel.PreviewLinear).
	Previews string `json:"previews"`
	// PreviewMap says where the linear map came from (with "linear" previews only).
	PreviewMap string `json:"preview_map,omitempty"`
	Images     int    `json:"images"` // batch size (with CFG the transformer runs twice as many rows)
	Side       int    `json:"image_side"`
	// PatchNums are the token map sides of the scales (per_scale_seconds has one entry per scale).
	PatchNums []int `json:"patch_nums"`
	Reps      int   `json:"reps"`

	TotalSeconds       float64   `json:"total_seconds"`
	TransformerSeconds float64   `json:"transformer_seconds"`
	DecodeSeconds      float64   `json:"decode_seconds"`
	PreviewSeconds     float64   `json:"preview_seconds"`
	PerScaleSeconds    []float64 `json:"per_scale_seconds"`
	TotalSecondsMin    float64   `json:"total_seconds_min"`
	// MAR: the diffusion head's sampling loops (the transformer part is then the MAE encoder and
	// decoder), how many network passes they made, and the iterations and diffusion steps.
	DiffusionSeconds float64 `json:"diffusion_seconds,omitempty"`
	DiffusionMin     float64 `json:"diffusion_seconds_min,omitempty"`
	DiffusionPasses  int     `json:"diffusion_passes,omitempty"`
	Iters            int     `json:"iters,omitempty"`
	DiffusionSteps   int     `json:"diffusion_steps,omitempty"`
	TransformerMin   float64 `json:"transformer_seconds_min"`
	DecodeMin        float64 `json:"decode_seconds_min"`

	GFLOP         PartGFLOP `json:"gflop"`
	GFLOPPerScale []float64 `json:"gflop_per_scale"`
	GFLOPS        PartGFLOP `json:"gflops_per_s"` // GFLOP / median seconds of the part

	PeakRSSBytes int64 `json:"peak_rss_bytes"` // process high-water mark (0: unknown on this OS)
	PeakGPUBytes int64 `json:"peak_gpu_bytes"` // GPU buffers, live + pooled + readback (0: not a GPU backend)
	// GPUMemoryLoaded and GPUMemory are the backend's own breakdown of its buffers (webgpu.MemoryStats)
	// after loading the model and after the runs, when it offers one: a debugging aid whose fields are
	// the backend's.
	GPUMemoryLoaded any `json:"gpu_memory_loaded,omitempty"`
	GPUMemory       any `json:"gpu_memory,omitempty"`
	// GPUHost is where the host's time went per timed image on a GPU backend (webgpu.HostTimes, divided
	// by the runs): waiting for the device, recording, submitting, creating buffers.
	GPUHost       any    `json:"gpu_host,omitempty"`
	DownloadBytes int64  `json:"download_bytes"` // converted weights to fetch: transformer + VQVAE decoder
	WeightsSource string `json:"weights_source"` // where the weights came from
}

// PartGFLOP is one number per part of a generation.
type PartGFLOP struct {
	Transformer float64 `json:"transformer"`
	Diffusion   float64 `json:"diffusion,omitempty"` // MAR's diffusion head
	Decode      float64 `json:"decode"`
	Preview     float64 `json:"preview"`
	Total       float64 `json:"total"`
}

// NewModelReport summarizes timed runs of a generation whose arithmetic is f (f.Mode says how the runs
// decoded their previews).
func NewModelReport(runs []ModelRun, f ModelFLOPs) (ModelReport, error) {
	if len(runs) == 0 {
		return ModelReport{}, errors.New("bench: no runs to report")
	}
	sec := func(pick func(ModelRun) time.Duration) (median, minimum float64) {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = pick(r).Seconds()
		}
		slices.Sort(v)
		m := v[len(v)/2]
		if len(v)%2 == 0 {
			m = (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		return m, v[0]
	}
	rep := ModelReport{Reps: len(runs), Previews: f.Mode.String()}
	rep.TotalSeconds, rep.TotalSecondsMin = sec(func(r ModelRun) time.Duration { return r.Total })
	rep.TransformerSeconds, rep.TransformerMin = sec(func(r ModelRun) time.Duration { return r.Transformer })
	rep.DecodeSeconds, rep.DecodeMin = sec(func(r ModelRun) time.Duration { return r.Decode })
	rep.PreviewSeconds, _ = sec(func(r ModelRun) time.Duration { return r.Preview })
	for si := range runs[0].Scales {
		m, _ := sec(func(r ModelRun) time.Duration {
			if si < len(r.Scales) {
				return r.Scales[si]
			}
			return 0
		})
		rep.PerScaleSeconds = append(rep.PerScaleSeconds, m)
	}
	for _, s := range f.Scales {
		rep.GFLOPPerScale = append(rep.GFLOPPerScale, float64(s)/1e9)
	}
	rep.GFLOP = PartGFLOP{Transformer: float64(f.Transformer) / 1e9, Decode: float64(f.Decode) / 1e9,
		Preview: float64(f.Preview) / 1e9}
	rep.GFLOP.Total = rep.GFLOP.Transformer + rep.GFLOP.Decode + rep.GFLOP.Preview
	rate := func(gflop, s float64) float64 {
		if s <= 0 {
			return 0
		}
		return gflop / s
	}
	rep.GFLOPS = PartGFLOP{
		Transformer: rate(rep.GFLOP.Transformer, rep.TransformerSeconds),
		Decode:      rate(rep.GFLOP.Decode, rep.DecodeSeconds),
		Preview:     rate(rep.GFLOP.Preview, rep.PreviewSeconds),
		Total:       rate(rep.GFLOP.Total, rep.TotalSeconds),
	}
	return rep, nil
}
