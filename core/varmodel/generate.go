package varmodel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
	"github.com/webvar/webvar/core/sample"
	"github.com/webvar/webvar/core/vqvae"
)

// Pipeline is a VAR transformer with its VQVAE: class labels in, images out (official
// autoregressive_infer_cfg).
type Pipeline struct {
	VAR *Model
	VAE *vqvae.Model
	// LinearPreview is the model's fitted latent-to-RGB map for PreviewLinear (from its weights' metadata,
	// see loader/convert); nil when it has none, and PreviewLinear then decodes PreviewFast previews.
	LinearPreview *vqvae.LinearPreview
}

// NewPipeline checks that the two models fit together.
func NewPipeline(v *Model, vae *vqvae.Model) (*Pipeline, error) {
	vc, ac := v.Config(), vae.Config()
	if vc.Cvae != ac.Cvae {
		return nil, fmt.Errorf("VAR expects %d latent channels (word_embed), the VQVAE has %d", vc.Cvae, ac.Cvae)
	}
	if vc.V != ac.V {
		return nil, fmt.Errorf("VAR predicts %d codes (head), the VQVAE codebook has %d", vc.V, ac.V)
	}
	if fmt.Sprint(vc.PatchNums) != fmt.Sprint(ac.PatchNums) {
		return nil, fmt.Errorf("VAR patch_nums %v differ from the VQVAE's %v", vc.PatchNums, ac.PatchNums)
	}
	return &Pipeline{VAR: v, VAE: vae}, nil
}

// Request is one generation: a batch of class labels and the sampling settings.
type Request struct {
	Labels     []int   // class per image, in [0, Classes)
	CFG        float64 // guidance strength; the effective t grows linearly from 0 at the first scale to CFG
	TopK       int     // 0: off; 1: greedy
	TopP       float64 // 0: off
	MoreSmooth bool    // Gumbel-softmax soft embeddings (official more_smooth)
	Seed       uint64
	// Prefix optionally fixes the tokens of the first len(Prefix) scales (each B*pn^2 ids, image-major)
	// instead of sampling them: "reroll from scale k" and teacher forcing.
	Prefix [][]int
	// RandomAfter, when > 0, replaces the tokens of every scale from index RandomAfter on (the scales after
	// the first RandomAfter) with ids drawn uniformly from [0, V) by the request's RNG, one Intn(V) per
	// token in image-major order after all the draws of the sampled scales: "randomize after scale k" shows
	// how much of the image the coarse scales decide. Prefix scales win over it. The transformer is not run
	// for randomized scales (no later scale samples from it). 0: off; >= the scale count: nothing changes.
	RandomAfter int
	// Edit, when set, keeps part of an input image (zero-shot editing, edit.go): its tokens replace the
	// sampled ones wherever Edit.Keep says, at every scale. Labels may then also be Classes, the null
	// class (in-painting without a class).
	Edit *Edit
	// Previews renders the accumulated f_hat after every scale into ScaleEvent.Preview: decoded at full
	// quality (PreviewFull) or at the scale's own resolution (PreviewFast), or mapped to RGB by the
	// model's linear map (PreviewLinear). The zero value is PreviewNone.
	Previews PreviewMode
}

// PreviewMode says how the per-scale previews of a generation are decoded.
type PreviewMode int

const (
	// PreviewNone decodes only the final image.
	PreviewNone PreviewMode = iota
	// PreviewFast decodes scale si's f_hat area-downsampled to that scale's own side pn: the VQVAE decoder
	// is fully convolutional, so a pn x pn latent decodes to a (pn*f) x (pn*f) image (f = image side /
	// latent side), which is bicubic-upsampled to the full side. A decode's arithmetic grows with the
	// latent's area, so all the previews together cost sum(pn^2)/P^2 full decodes instead of one per
	// scale (VAR-d16: 424/256 = 1.7 instead of 9). The area-downsampled f_hat is what the transformer
	// itself is shown of the image at the next scale; the preview shows no more detail than scale si has
	// decided. The last scale is always the full decode: the final image does not depend on the mode.
	PreviewFast
	// PreviewFull decodes the full-resolution f_hat of every scale, as the official demo does: each
	// preview costs as much as the final image.
	PreviewFull
	// PreviewLinear maps f_hat's latent channels to RGB with the model's fitted affine map
	// (Pipeline.LinearPreview, vqvae.LinearPreview) at the latent resolution and upsamples the result:
	// no decoder at all, a blurred preview at negligible cost. A model without a map gets PreviewFast
	// previews instead (Pipeline.EffectivePreviews). The last scale is the full decode, as in every mode.
	PreviewLinear
)

// InteractivePreviews is the preview mode for a front end that shows every scale of images imageSide
// pixels wide, for a model with or without a fitted linear map (Pipeline.InteractivePreviews). With a
// map, linear previews at every size: they are the only mode that stays within issue 7's budget of 10%
// of a generation (3.6% of VAR-d16's on an H100, where fast previews add 64% and full ones 129%; under
// 0.1% on a CPU: core/bench/README.md, Previews, has cost and quality measured). Their blur is the
// price; full previews stay an option for whoever wants them. Without a map: full
// decodes for images up to 64 pixels, fast ones above. Fast previews of the first scales decode a 1x1
// or 2x2 latent, smaller than anything the decoder was trained on, and show colour blobs; for a small
// model full ones cost a few milliseconds on a GPU and show a blurred image.
func InteractivePreviews(imageSide int, linearMap bool) PreviewMode {
	switch {
	case linearMap:
		return PreviewLinear
	case imageSide <= 64:
		return PreviewFull
	}
	return PreviewFast
}

func (m PreviewMode) String() string {
	switch m {
	case PreviewNone:
		return "none"
	case PreviewFast:
		return "fast"
	case PreviewFull:
		return "full"
	case PreviewLinear:
		return "linear"
	}
	return fmt.Sprintf("PreviewMode(%d)", int(m))
}

// PreviewModes lists the modes from the cheapest to the most faithful.
func PreviewModes() []PreviewMode {
	return []PreviewMode{PreviewNone, PreviewLinear, PreviewFast, PreviewFull}
}

// ParsePreviewMode maps "none", "linear", "fast" or "full" (String's names) to its mode, for flags and
// query strings.
func ParsePreviewMode(s string) (PreviewMode, error) {
	for _, m := range PreviewModes() {
		if s == m.String() {
			return m, nil
		}
	}
	return PreviewNone, fmt.Errorf("preview mode %q: want none, linear, fast or full", s)
}

// ScaleEvent reports a finished scale.
type ScaleEvent struct {
	Scale, Scales int
	PN            int
	Tokens        []int            // B*pn^2 ids, image-major, row-major within an image
	Preview       *core.HostTensor // [B, 3, H, W] in [0, 1] unless Request.Previews is PreviewNone
	Elapsed       time.Duration    // since the start of the generation
	// Decode is the part of this scale's time spent turning f_hat into an image: the preview
	// (Request.Previews: the VQVAE decoder, or the linear map) or, at the last scale, the final image. It
	// lets benchmarks separate the previews' and the decoder's cost from the transformer's.
	Decode time.Duration
}

// Result is a finished generation.
type Result struct {
	Tokens [][]int         // per scale: B*pn^2 ids
	Images core.HostTensor // [B, 3, H, W] in [0, 1]
}

// TokensOf returns image b's token maps, one row-major slice per scale.
func (r *Result) TokensOf(b int, patchNums []int) [][]int {
	out := make([][]int, len(r.Tokens))
	for si, t := range r.Tokens {
		n := patchNums[si] * patchNums[si]
		out[si] = append([]int(nil), t[b*n:(b+1)*n]...)
	}
	return out
}

// Generate runs a request on a fresh op sequence. onScale (may be nil) is called once per scale, in
// order, after that scale; an error from it stops the generation and is returned. With linear previews
// on an asynchronous backend (WebGPU) a scale's call comes once the next scale's work is recorded, so
// that the preview is rendered while the GPU runs it; everywhere else it comes before the next scale.
func (p *Pipeline) Generate(ctx context.Context, b core.Backend, req Request, onScale func(ScaleEvent) error) (*Result, error) {
	return p.Run(ctx, core.NewOps(b), req, onScale)
}

func (p *Pipeline) validate(req Request) error {
	c := p.VAR.Config()
	if len(req.Labels) == 0 {
		return fmt.Errorf("no labels: nothing to generate")
	}
	maxLabel := c.Classes
	if req.Edit != nil {
		maxLabel++ // the null class
		sizes := make([]int, len(c.PatchNums))
		for i, pn := range c.PatchNums {
			sizes[i] = pn * pn
		}
		if err := req.Edit.Check(sizes); err != nil {
			return err
		}
	}
	for _, l := range req.Labels {
		if l < 0 || l >= maxLabel {
			return fmt.Errorf("class %d outside [0, %d)", l, maxLabel)
		}
	}
	if req.TopK < 0 || req.TopP < 0 || req.TopP > 1 {
		return fmt.Errorf("top-k %d / top-p %g: want top-k >= 0 and 0 <= top-p <= 1", req.TopK, req.TopP)
	}
	switch req.Previews {
	case PreviewNone, PreviewLinear, PreviewFast, PreviewFull:
	default:
		return fmt.Errorf("previews %v: want PreviewNone, PreviewLinear, PreviewFast or PreviewFull", req.Previews)
	}
	if req.RandomAfter < 0 {
		return fmt.Errorf("random-after %d: want >= 0 (0: off)", req.RandomAfter)
	}
	if len(req.Prefix) > len(c.PatchNums) {
		return fmt.Errorf("prefix has %d scales, the model has %d", len(req.Prefix), len(c.PatchNums))
	}
	for si, ids := range req.Prefix {
		if want := len(req.Labels) * c.PatchNums[si] * c.PatchNums[si]; len(ids) != want {
			return fmt.Errorf("prefix scale %d has %d tokens, want %d", si, len(ids), want)
		}
		for _, id := range ids {
			if id < 0 || id >= c.V {
				return fmt.Errorf("prefix scale %d: token %d outside [0, %d)", si, id, c.V)
			}
		}
	}
	return nil
}

// Run is Generate on a caller's op sequence (tests set o.OnTap to see the intermediate tensors:
// ar.s{k}.block{i}.out, ar.s{k}.logits_raw, ar.s{k}.logits_cfg, ar.s{k}.f_hat, ar.s{k}.next_in).
func (p *Pipeline) Run(ctx context.Context, o *core.Ops, req Request, onScale func(ScaleEvent) error) (*Result, error) {
	if err := p.validate(req); err != nil {
		return nil, err
	}
	// Registered first, so it runs last, once every tensor of the generation is freed: the pooled buffers
	// of its decoder are no use to the next image's transformer.
	defer o.ReleaseIdle()
	start := time.Now()
	m, c := p.VAR, p.VAR.Config()
	bsz := len(req.Labels)
	k := len(c.PatchNums)
	rng := core.NewRNG(req.Seed)

	// Batch 2B: conditional rows first, then the null class for CFG.
	labels := make([]int, 2*bsz)
	copy(labels, req.Labels)
	for i := bsz; i < 2*bsz; i++ {
		labels[i] = c.Classes
	}
	cond, mod := m.condition(o, labels)
	defer mod.Free(o)
	defer o.Free(cond)
	kv := nn.NewKVCache(o, c.Depth, 2*bsz, c.L, c.C)
	defer kv.Free(o)

	x := m.firstInput(o, cond, 2*bsz)
	fhat := p.VAE.ZeroFHat(o, bsz)
	var pending *pendingPreview // a linear preview rendering on the host, its event not yet sent
	// Whatever path returns, the preview's goroutine has finished: nothing outlives the call.
	defer func() { pending.wait() }()
	res := &Result{}
	for si, pn := range c.PatchNums {
		if err := ctx.Err(); err != nil {
			o.Free(x, fhat)
			// The finished scale's event, as the other preview modes sent it before this check.
			if derr := pending.deliver(start, onScale); derr != nil && !errors.Is(derr, err) {
				return nil, errors.Join(err, derr)
			}
			return nil, err
		}
		pfx := fmt.Sprintf("ar.s%d.", si)
		// From RandomAfter on no scale samples from the transformer: skip it (x is nil there).
		random := req.RandomAfter > 0 && si >= req.RandomAfter
		ratio := 0.0
		if k > 1 {
			ratio = float64(si) / float64(k-1)
		}
		var mixed []float32 // [B*l*V]
		if !random {
			x = m.stack.Forward(o, x, mod, kv, nil, fmt.Sprintf("scale %d: ", si), pfx)
			kv.N += pn * pn
			if si == k-1 || req.RandomAfter > 0 && si+1 >= req.RandomAfter {
				kv.Free(o) // no later scale runs the transformer: give the decoder the memory
			}
			logitsT := m.head(o, x, mod, pfx)
			o.Free(x)
			x = nil
			o.Tap(pfx+"logits_raw", logitsT)
			// The previous scale's linear preview was rendered while this scale was being recorded;
			// deliver it before waiting for the GPU.
			if err := pending.deliver(start, onScale); err != nil {
				o.Free(logitsT, fhat)
				return nil, err
			}
			raw := o.Download(logitsT)
			o.Free(logitsT)
			if err := o.Err(); err != nil {
				o.Free(fhat)
				return nil, err
			}

			mixed = sample.CFGMix(raw.Data, req.CFG, ratio)
			if o.OnTap != nil {
				t := o.Upload(core.HostTensor{Shape: core.Shape{bsz, pn * pn, c.V}, Data: mixed})
				o.Tap(pfx+"logits_cfg", t)
				o.Free(t)
			}
		}
		var ids []int
		var h *core.Tensor
		switch {
		case si < len(req.Prefix):
			ids = append([]int(nil), req.Prefix[si]...)
			h = p.VAE.Embed(o, ids, bsz, pn)
		case random:
			ids = uniformIDs(bsz*pn*pn, c.V, rng)
			h = p.VAE.Embed(o, ids, bsz, pn)
		default:
			var soft []float32
			ids, soft = sample.Scale(mixed, c.V, req.TopK, req.TopP, req.MoreSmooth, ratio, rng)
			if soft != nil {
				st := o.Upload(core.HostTensor{Shape: core.Shape{bsz * pn * pn, c.V}, Data: soft})
				h = p.VAE.SoftEmbed(o, st, bsz, pn)
				o.Free(st)
			} else {
				h = p.VAE.Embed(o, ids, bsz, pn)
			}
		}
		if req.Edit != nil {
			// The kept positions take the input's tokens; h is rebuilt from the final ids (the soft
			// embedding of more_smooth would mix the sampled codes in).
			req.Edit.Apply(si, ids)
			o.Free(h)
			h = p.VAE.Embed(o, ids, bsz, pn)
		}
		res.Tokens = append(res.Tokens, ids)

		nf, next := p.VAE.AddScale(o, si, fhat, h)
		o.Free(h, fhat)
		fhat = nf
		o.Tap(pfx+"f_hat", fhat)
		if next != nil {
			o.Tap(pfx+"next_in", next)
			// A randomized next scale needs no transformer input.
			if nextRandom := req.RandomAfter > 0 && si+1 >= req.RandomAfter; !nextRandom {
				// word_embed(next.view(B, Cvae, -1).transpose(1, 2)) + lvl_pos, repeated for the CFG half.
				npn := c.PatchNums[si+1]
				seq := o.Transpose12(o.Reshape(next, bsz, c.Cvae, npn*npn))
				we := o.Linear(seq, m.wordW, m.wordB)
				xi := o.Add(we, m.lvlPos[si+1])
				x = o.Concat(0, xi, xi)
				o.Free(seq, we, xi)
			}
			o.Free(next)
		}
		// The previous scale's linear preview, on a scale without transformer (nothing delivered it above).
		if err := pending.deliver(start, onScale); err != nil {
			o.Free(fhat)
			return nil, err
		}
		if err := o.Err(); err != nil {
			o.Free(fhat)
			return nil, err
		}

		ev := ScaleEvent{Scale: si, Scales: k, PN: pn, Tokens: ids}
		decodeStart := time.Now()
		previews := req.Previews != PreviewNone
		if previews && si < k-1 && p.EffectivePreviews(req.Previews) == PreviewLinear {
			// Only f_hat's readback waits; on a GPU the map and the upsampling run on the host while the
			// device works on the next scale, and the event follows before the next wait (pendingPreview).
			// On the CPU nothing would run meanwhile (recording the next scale is computing it), so the
			// event goes out now, before the next scale, as in the other modes.
			h := o.Download(fhat)
			if err := o.Err(); err != nil {
				o.Free(fhat)
				return nil, err
			}
			pending = startLinearPreview(p.LinearPreview, h, p.VAE.ImageSize(), ev, time.Since(decodeStart))
			if !o.Asynchronous() {
				if err := pending.deliver(start, onScale); err != nil {
					o.Free(fhat)
					return nil, err
				}
			}
			continue
		}
		if previews && si < k-1 {
			img, err := p.Preview(o, fhat, si, req.Previews)
			if err == nil {
				err = o.Err()
			}
			if err != nil {
				o.Free(fhat)
				return nil, err
			}
			ev.Preview = &img
			if p.EffectivePreviews(req.Previews) == PreviewFast {
				// Each scale's fast preview decodes at its own resolution, so its buffers are of no use
				// to the next one's and would sit in the pool beside the transformer's KV cache: VAR-d16
				// int4 peaked at 1115 MB with them, 439 MB of it idle decoder buffers.
				o.ReleaseIdle()
			}
		}
		if si == k-1 {
			// The transformer's pooled buffers (its KV cache among them) are no use to the decoder, unless
			// full previews left the decoder's own buffers in the pool too.
			if req.Previews != PreviewFull {
				o.ReleaseIdle()
			}
			res.Images = p.decode(o, fhat)
			if previews {
				ev.Preview = &res.Images
			}
		}
		if err := o.Err(); err != nil {
			o.Free(fhat)
			return nil, err
		}
		ev.Elapsed = time.Since(start)
		if previews || si == k-1 {
			// On a queueing backend this includes finishing the small f_hat update queued before the
			// decoder: the decoder's readback is the first wait after it.
			ev.Decode = time.Since(decodeStart)
		}
		if onScale != nil {
			if err := onScale(ev); err != nil {
				o.Free(fhat)
				return nil, err
			}
		}
	}
	o.Free(fhat)
	if err := pending.deliver(start, onScale); err != nil {
		return nil, err
	}
	return res, o.Err()
}

// pendingPreview is a linear preview being rendered on the host (a goroutine) while the GPU runs the
// next scale: on an H100 the map and the bilinear upsampling of one 256x256 preview took about as long as
// a small scale's transformer. Its event is delivered at the next point where the host would wait for the
// GPU anyway, so previews cost the generation f_hat's readback and little else.
type pendingPreview struct {
	ev       ScaleEvent
	readback time.Duration // the part the GPU did not overlap
	done     chan struct{}
	img      core.HostTensor
	err      error
}

func startLinearPreview(lp *vqvae.LinearPreview, fhat core.HostTensor, side int, ev ScaleEvent, readback time.Duration) *pendingPreview {
	pp := &pendingPreview{ev: ev, readback: readback, done: make(chan struct{})}
	go func() {
		defer close(pp.done)
		pp.img, pp.err = lp.Apply(fhat, side)
	}()
	return pp
}

// wait waits for the preview's goroutine, if one is running (its event is dropped: an error path).
func (pp *pendingPreview) wait() {
	if pp != nil && pp.done != nil {
		<-pp.done
	}
}

// deliver waits for the preview (if any is pending), sends its event and clears it. Its Decode is the
// readback plus the wait here: the host time the preview took from the generation.
func (pp *pendingPreview) deliver(start time.Time, onScale func(ScaleEvent) error) error {
	if pp == nil || pp.done == nil {
		return nil
	}
	t0 := time.Now()
	<-pp.done
	ev := pp.ev
	pp.done = nil
	if pp.err != nil {
		return pp.err
	}
	ev.Preview = &pp.img
	ev.Decode = pp.readback + time.Since(t0)
	ev.Elapsed = time.Since(start)
	if onScale != nil {
		return onScale(ev)
	}
	return nil
}

// uniformIDs draws n token ids uniformly from [0, v): the tokens of a RandomAfter scale.
func uniformIDs(n, v int, rng *core.RNG) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = rng.Intn(v)
	}
	return ids
}

// decode is the VQVAE decoder on f_hat, mapped from [-1, 1] to [0, 1] on the host.
func (p *Pipeline) decode(o *core.Ops, fhat *core.Tensor) core.HostTensor {
	return p.download(o, p.VAE.Decode(o, fhat))
}

// download reads a decoded image back, mapped from [-1, 1] to [0, 1] on the host.
func (p *Pipeline) download(o *core.Ops, img *core.Tensor) core.HostTensor {
	h := o.Download(img)
	o.Free(img)
	for i, v := range h.Data {
		h.Data[i] = (v + 1) * 0.5
	}
	return h
}
