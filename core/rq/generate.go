package rq

import (
	"context"
	"fmt"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// Pipeline is an RQ-Transformer and its RQ-VAE: class labels in, codes and images out.
type Pipeline struct {
	M *Model
	V *VAE
	// Defaults are the release's sampling settings (config.yaml's sampling or experiment.sample), when it
	// had them; zero fields take OfficialDefaults'.
	Defaults Defaults
}

// LoadPipeline loads the transformer (stage 2) and the RQ-VAE (stage 1) from their tensors, the
// architecture inferred from them (InferConfig; opt gives the head counts).
func LoadPipeline(stage2, stage1 core.WeightSource, b core.Backend, opt Options) (*Pipeline, error) {
	cfg, err := InferConfig(stage2, opt)
	if err != nil {
		return nil, fmt.Errorf("rq transformer: %w", err)
	}
	return loadPipeline(stage2, stage1, b, cfg)
}

func loadPipeline(stage2, stage1 core.WeightSource, b core.Backend, cfg Config) (*Pipeline, error) {
	m, err := Load(core.NewWeights(stage2, b), cfg)
	if err != nil {
		return nil, err
	}
	v, err := LoadVAE(core.NewWeights(stage1, b), cfg.D)
	if err != nil {
		return nil, err
	}
	return NewPipeline(m, v)
}

// NewPipeline pairs a transformer with its RQ-VAE, checking that the VAE's codes are the ones it predicts.
func NewPipeline(m *Model, v *VAE) (*Pipeline, error) {
	if err := m.checkVAE(v); err != nil {
		return nil, err
	}
	return &Pipeline{M: m, V: v}, nil
}

// ImageSize is the side of the generated images (H and W codes of Downsample pixels each).
func (p *Pipeline) ImageSize() (h, w int) {
	f := p.V.cfg.Downsample()
	return p.M.cfg.H * f, p.M.cfg.W * f
}

// Position is what one position of the sampler did, for progress and for tests.
type Position struct {
	Index, Count int   // raster position and H*W
	Kept         bool  // its codes came from the request's prefix, not the sampler
	Codes        Codes // every code known after it (later positions still zero)
	// Logits, when the request asked for them (Request.Logits), are the D steps' logits handed to the
	// sampler, [D][B*V] (nil for kept positions).
	Logits [][]float32
	// Elapsed is the time since the start of the generation.
	Elapsed time.Duration
}

// Request is one RQTransformer.sample call.
type Request struct {
	Labels []int // class per image
	Sampling
	// RNG draws one uniform variate per image and step ((position, depth) order, images in order within a
	// step); nil: core.NewRNG(0).
	RNG *core.RNG
	// Prefix keeps the codes of the first len(Prefix) positions instead of sampling them (the official
	// sample's start_loc with a partial_sample; image completion, rerolls): Prefix[i] are position i's
	// codes, B*D ids image-major.
	Prefix [][]int
	// Logits asks for every step's logits in Position.Logits.
	Logits bool
	// OnPosition, when set, is called after every position, kept ones included, in order; an error stops
	// the generation.
	OnPosition func(Position) error
}

// Sample runs the cached sampler (RQTransformer.sample with cached=True): for each position in raster
// order, one body step (a prefill of every kept position first) and D head steps on a cache reset at the
// position, each sampling one code per image. It returns the codes (B, H, W, D).
func (p *Pipeline) Sample(ctx context.Context, o *core.Ops, req Request) (Codes, error) {
	m, v := p.M, p.V
	cfg := m.cfg
	if err := m.checkLabels(req.Labels); err != nil {
		return Codes{}, err
	}
	if err := req.Sampling.check(); err != nil {
		return Codes{}, err
	}
	B, L, D, C := len(req.Labels), cfg.Positions(), cfg.D, cfg.C
	codes := NewCodes(B, cfg.H, cfg.W, D)
	if len(req.Prefix) > L {
		return Codes{}, fmt.Errorf("rq: a prefix of %d positions, the map has %d", len(req.Prefix), L)
	}
	for i, ids := range req.Prefix {
		if len(ids) != B*D {
			return Codes{}, fmt.Errorf("rq: prefix position %d has %d codes, want %d (%d images x %d depths)", i, len(ids), B*D, B, D)
		}
		for j, id := range ids {
			if id < 0 || id >= cfg.V {
				return Codes{}, fmt.Errorf("rq: prefix position %d: code %d outside 0..%d", i, id, cfg.V-1)
			}
			codes.IDs[codes.At(j/D, i, j%D)] = id
		}
	}
	rng := req.RNG
	if rng == nil {
		rng = core.NewRNG(0)
	}
	start := time.Now()
	snapshot := func() Codes {
		c := codes
		c.IDs = append([]int(nil), codes.IDs...)
		return c
	}
	K := len(req.Prefix)
	if req.OnPosition != nil {
		for i := range K {
			if err := req.OnPosition(Position{Index: i, Count: L, Kept: true, Codes: snapshot(), Elapsed: time.Since(start)}); err != nil {
				return Codes{}, err
			}
		}
	}
	if K == L {
		return codes, nil
	}

	bodyKV := nn.NewKVCache(o, cfg.Body.Layers, B, L, C)
	headKV := nn.NewKVCache(o, cfg.Head.Layers, B, D, C)
	defer bodyKV.Free(o)
	defer headKV.Free(o)

	for i := K; i < L; i++ {
		if err := ctx.Err(); err != nil {
			return Codes{}, err
		}
		// The body's input: at the first sampled position every token up to it (the condition and the
		// kept positions), afterwards the one token of the previous position.
		first := i
		if i == K {
			first = 0
		}
		x := p.bodyTokens(o, req.Labels, codes, first, i) // [B, i-first+1, C]
		out := m.body.step(o, x, bodyKV)
		o.Free(x)
		l := i - first + 1
		var spatial *core.Tensor // [B, C]: the body's output at position i
		if l == 1 {
			spatial = o.Reshape(out, B, C)
		} else {
			ids := make([]int, B)
			for b := range B {
				ids[b] = b*l + l - 1
			}
			spatial = o.Embedding(o.Reshape(out, B*l, C), ids)
			o.Free(out)
		}

		headKV.N = 0
		var running *core.Tensor // [B, Embed]: the code vectors of depths < d summed
		var logs [][]float32
		for d := range D {
			var h *core.Tensor
			if d == 0 {
				pd := o.Reshape(o.Embedding(m.posD, []int{0}), C)
				h = o.Add(spatial, pd)
				o.Free(pd)
			} else {
				ids := make([]int, B)
				for b := range B {
					ids[b] = codes.IDs[codes.At(b, i, d-1)]
				}
				e := o.Embedding(v.embed, ids)
				if running == nil {
					running = e
				} else {
					r := o.Add(running, e)
					o.Free(running, e)
					running = r
				}
				hm := m.headMLP.Apply(o, running)
				pd := o.Reshape(o.Embedding(m.posD, []int{d}), C)
				h = o.Add(hm, pd)
				o.Free(hm, pd)
			}
			y := m.head.step(o, o.Reshape(h, B, 1, C), headKV)
			o.Free(h)
			lg := m.classify(o, y)
			o.Free(y)
			host := o.Download(o.Reshape(lg, B*cfg.V))
			o.Free(lg)
			if err := o.Err(); err != nil {
				return Codes{}, err
			}
			ids, err := req.Sampling.Sample(host.Data, cfg.V, rng)
			if err != nil {
				return Codes{}, fmt.Errorf("%w at position %d, depth %d", err, i, d)
			}
			for b, id := range ids {
				codes.IDs[codes.At(b, i, d)] = id
			}
			if req.Logits {
				logs = append(logs, host.Data)
			}
		}
		o.Free(running, spatial)
		if err := o.Err(); err != nil {
			return Codes{}, err
		}
		if req.OnPosition != nil {
			if err := req.OnPosition(Position{Index: i, Count: L, Codes: snapshot(), Logits: logs, Elapsed: time.Since(start)}); err != nil {
				return Codes{}, err
			}
		}
	}
	return codes, o.Err()
}

// bodyTokens is the body's input for tokens first..last (token 0 is the condition, token j > 0 is
// position j-1's codes: sum_d input_mlp(e_d) + pos_emb_hw[j-1]): [B, last-first+1, C].
func (p *Pipeline) bodyTokens(o *core.Ops, labels []int, codes Codes, first, last int) *core.Tensor {
	m := p.M
	B, D, C, E := len(labels), m.cfg.D, m.cfg.C, m.cfg.InEmbed
	var parts []*core.Tensor
	if first == 0 {
		parts = append(parts, o.Reshape(m.condTokens(o, labels), B, 1, C))
		first = 1
	}
	if n := last - first + 1; n > 0 {
		// Positions first-1 .. last-1, image-major.
		sub := NewCodes(B, 1, n, D)
		var pos []int
		for b := range B {
			for j := range n {
				for d := range D {
					sub.IDs[sub.At(b, j, d)] = codes.IDs[codes.At(b, first-1+j, d)]
				}
			}
		}
		for j := range n {
			pos = append(pos, first-1+j)
		}
		emb := o.Reshape(p.V.CodeEmbeddings(o, sub), B*n, D*E)
		sums := o.Reshape(m.inputSums(o, emb, B*n), B, n, C)
		o.Free(emb)
		pe := o.Embedding(m.posHW, pos) // [n, C]
		x := o.Add(sums, pe)
		o.Free(sums, pe)
		parts = append(parts, x)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	x := o.Concat(1, parts...)
	o.Free(parts...)
	return x
}

// Complete keeps the codes of the first keep positions (raster order) of images x [B, In, H, W] in [-1, 1]
// and samples the rest: image completion as the official sample(partial_sample, start_loc) does it.
func (p *Pipeline) Complete(ctx context.Context, o *core.Ops, x *core.Tensor, keep int, req Request) (Codes, error) {
	c := p.V.Codes(o, x)
	if err := o.Err(); err != nil {
		return Codes{}, err
	}
	cfg := p.M.cfg
	if c.B != len(req.Labels) || c.H != cfg.H || c.W != cfg.W {
		return Codes{}, fmt.Errorf("rq: %d images of %dx%d codes for %d labels, want %dx%d", c.B, c.H, c.W, len(req.Labels), cfg.H, cfg.W)
	}
	if keep < 0 || keep > cfg.Positions() {
		return Codes{}, fmt.Errorf("rq: keep %d positions, want 0..%d", keep, cfg.Positions())
	}
	req.Prefix = PrefixOf(c, keep)
	return p.Sample(ctx, o, req)
}

// PrefixOf is the first keep positions of c as Request.Prefix: per position, B*D ids image-major.
func PrefixOf(c Codes, keep int) [][]int {
	out := make([][]int, keep)
	for i := range keep {
		for b := range c.B {
			for d := range c.D {
				out[i] = append(out[i], c.IDs[c.At(b, i, d)])
			}
		}
	}
	return out
}

// Decode is the images of codes, [B, 3, H, W] in about [-1, 1] (decode_code, not clamped).
func (p *Pipeline) Decode(o *core.Ops, c Codes) *core.Tensor { return p.V.DecodeCodes(o, c) }

// DecodeHost is Decode downloaded to the host (the backend's tensor freed).
func (p *Pipeline) DecodeHost(o *core.Ops, c Codes) core.HostTensor {
	img := p.Decode(o, c)
	h := o.Download(img)
	o.Free(img)
	return h
}

// ToUnit maps decoded images to [0, 1] as main_sampling_fid saves them: clamp(x*0.5 + 0.5, 0, 1).
func ToUnit(h core.HostTensor) core.HostTensor {
	out := core.HostTensor{Shape: h.Shape.Clone(), Data: make([]float32, len(h.Data))}
	for i, v := range h.Data {
		out.Data[i] = min(max(v*0.5+0.5, 0), 1)
	}
	return out
}

// FLOPs counts one generation's transformer arithmetic for B images (2 per multiply-add; Linear layers and
// attention's two products over the cached keys): per position one body token and D head tokens, the
// input and head MLPs and the classifier at every depth. Norms and sampling are left out.
func (p *Pipeline) FLOPs(B int) int64 {
	c := p.M.cfg
	C, V, E := int64(c.C), int64(c.V), int64(c.InEmbed)
	layer := func(ffn int64, past int64) int64 { return 2*(4*C*C+2*C*ffn) + 4*past*C }
	var total int64
	for pos := range int64(c.Positions()) {
		total += 2 * int64(c.D) * E * C // input_mlp per depth of the previous position
		for range c.Body.Layers {
			total += layer(int64(c.Body.FFN), pos+1)
		}
		for d := range int64(c.D) {
			if d > 0 {
				total += 2 * E * C // head_mlp of the cumulative sum
			}
			for range c.Head.Layers {
				total += layer(int64(c.Head.FFN), d+1)
			}
			total += 2 * C * V // the classifier
		}
	}
	return total * int64(B)
}
