// Package convert turns official checkpoints into webvar's weights directory (weights/FORMAT.md) and
// reads such a directory back as the models' weight sources.
package convert

import (
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/loader"
	"github.com/webvar/webvar/weights"
)

// The converter turns the official checkpoints (VAR transformer + VQVAE) into one weights directory
// (weights/FORMAT.md), tensor by tensor: a checkpoint tensor is read, encoded and written before the next
// is read, so peak memory is about one tensor, not the checkpoint.

// Name prefixes of the two models inside one converted directory.
const (
	VARPrefix = "var."
	VAEPrefix = "vae."
)

// skipped reports the derivable or training-only tensors the converter leaves out (the models derive or
// ignore them).
func skipped(name string) bool {
	switch name {
	case VARPrefix + "lvl_1L", // levels, from patch_nums
		VARPrefix + "attn_bias_for_masking",     // the training mask, from patch_nums (L^2 floats)
		VAEPrefix + "quantize.ema_vocab_hit_SV": // codebook usage statistics of training
		return true
	}
	return false
}

// ConvertOptions configure Convert.
type ConvertOptions struct {
	PatchNums []int // as for generate; recorded in the manifest
	Heads     int   // as for generate (checkpoints without l2-norm attention)
	// Quant is the scheme of the transformer's Linear weights (varmodel.Quantizable). With f16, int8 or
	// int4, the other float tensors are stored f16 when that costs little precision (see F16MaxRelRMS)
	// and f32 otherwise; with f32 everything is f32.
	Quant weights.Scheme
	// KeepF32 are path.Match patterns of tensor names (with the var./vae. prefix) stored f32 regardless.
	KeepF32    []string
	ChunkBytes int64
	// NoEncoder leaves out the VQVAE encoder (and quant_conv): generation only decodes, so a model meant
	// for generation downloads less; tokenizing images (editing) needs the encoder.
	NoEncoder bool
	// ClassNames, when set, are stored in the manifest's meta (one per class, index = label) so that
	// front ends can show them. Their count must match the model's classes.
	ClassNames []string
	// Sampling, when set, is stored in the manifest's meta as the model's default sampling settings, which
	// generate, serve and preview use unless told otherwise (Sampling.Meta).
	Sampling *Sampling
	// OnTensor is called after each tensor is written (progress and the error it introduced).
	OnTensor func(TensorReport)
}

// F16MaxRelRMS is the largest relative RMS error f16 storage may add to a tensor before the converter
// keeps it f32 (f16 has 11 significant bits: ~3e-4 relative for well-scaled data).
const F16MaxRelRMS = 1e-3

// f32Below keeps tiny tensors (biases, norms, scales) f32: they cost nothing and feed every token.
const f32Below = 4096

// TensorReport describes one converted tensor.
type TensorReport struct {
	Index, Total int
	Name         string
	Scheme       weights.Scheme
	Shape        core.Shape
	Bytes        int64   // stored bytes
	MaxAbs       float64 // largest absolute error the storage introduced
	RelRMS       float64 // sqrt(sum err^2 / sum x^2)
}

// Convert reads varPath and vaePath (.pth or .safetensors) and writes the weights directory outDir.
func Convert(varPath, vaePath, outDir string, opt ConvertOptions) (*weights.Manifest, error) {
	switch opt.Quant {
	case "":
		opt.Quant = weights.Int8
	case weights.F32, weights.F16, weights.Int8, weights.Int4:
	default:
		return nil, fmt.Errorf("quantization %q: want f32, f16, int8 or int4", opt.Quant)
	}
	for _, g := range opt.KeepF32 {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("keep-f32 pattern %q: %w", g, err)
		}
	}
	vc, err := loader.Open(varPath)
	if err != nil {
		return nil, err
	}
	defer vc.Close()
	ac, err := loader.Open(vaePath)
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	cfg, err := varmodel.InferConfig(vc.WeightSource(), varmodel.Options{PatchNums: opt.PatchNums, Heads: opt.Heads})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", varPath, err)
	}
	if opt.ClassNames != nil && len(opt.ClassNames) != cfg.Classes {
		return nil, fmt.Errorf("%d class names for a model with %d classes", len(opt.ClassNames), cfg.Classes)
	}

	type item struct {
		name string // with prefix
		key  string // in its checkpoint
		c    *loader.Checkpoint
	}
	var items []item
	for _, src := range []struct {
		c      *loader.Checkpoint
		prefix string
	}{{vc, VARPrefix}, {ac, VAEPrefix}} {
		for _, t := range src.c.Tensors() {
			if opt.included(src.prefix + t.Name) {
				items = append(items, item{src.prefix + t.Name, t.Name, src.c})
			}
		}
	}

	w, err := weights.NewWriter(outDir, weights.WriterOptions{ChunkBytes: opt.ChunkBytes})
	if err != nil {
		return nil, err
	}
	for i, it := range items {
		h, err := it.c.Host(it.key)
		if err != nil {
			w.Abort()
			return nil, err
		}
		rep, err := convertTensor(w, it.name, h, opt)
		if err != nil {
			w.Abort()
			return nil, fmt.Errorf("tensor %s: %w", it.name, err)
		}
		rep.Index, rep.Total = i, len(items)
		if opt.OnTensor != nil {
			opt.OnTensor(rep)
		}
	}
	config := map[string]any{
		"patch_nums": cfg.PatchNums, "heads": cfg.Heads, "depth": cfg.Depth, "width": cfg.C,
		"classes": cfg.Classes, "vocab": cfg.V, "cvae": cfg.Cvae,
	}
	meta := map[string]string{"converted_from": path.Base(varPath) + " + " + path.Base(vaePath),
		"quant": string(opt.Quant), "vae_encoder": fmt.Sprint(!opt.NoEncoder)}
	if opt.ClassNames != nil {
		names, err := json.Marshal(opt.ClassNames)
		if err != nil {
			w.Abort()
			return nil, err
		}
		meta[MetaClassNames] = string(names)
	}
	if opt.Sampling != nil {
		if err := opt.Sampling.Validate(); err != nil {
			w.Abort()
			return nil, err
		}
		for k, v := range opt.Sampling.Meta() {
			meta[k] = v
		}
	}
	return w.Close("var", config, meta)
}

// included reports whether Convert writes the tensor name (with its var./vae. prefix).
func (opt ConvertOptions) included(name string) bool {
	if opt.NoEncoder && (strings.HasPrefix(name, VAEPrefix+"encoder.") || strings.HasPrefix(name, VAEPrefix+"quant_conv.")) {
		return false
	}
	return !skipped(name)
}

// storage is the scheme Convert gives a tensor as far as its name and size decide it: the quantized
// scheme of a transformer Linear weight, f32, or, with maybeF16, f16 if the values fit f16 within
// F16MaxRelRMS (see f16Error) and f32 otherwise.
func (opt ConvertOptions) storage(name string, numel int) (s weights.Scheme, maybeF16 bool) {
	keep := false
	for _, g := range opt.KeepF32 {
		if ok, _ := path.Match(g, name); ok {
			keep = true
		}
	}
	if _, ok := weights.Scheme(opt.Quant).Quant(); ok && !keep && strings.HasPrefix(name, VARPrefix) &&
		varmodel.Quantizable(strings.TrimPrefix(name, VARPrefix)) {
		return opt.Quant, false
	}
	return weights.F32, opt.Quant != weights.F32 && !keep && numel >= f32Below
}

// convertTensor chooses the storage of one tensor, writes it and reports the error it introduced.
func convertTensor(w *weights.Writer, name string, h core.HostTensor, opt ConvertOptions) (TensorReport, error) {
	rep := TensorReport{Name: name, Shape: h.Shape}
	scheme, maybeF16 := opt.storage(name, len(h.Data))
	if q, ok := scheme.Quant(); ok {
		qh, err := core.Quantize(h, q)
		if err != nil {
			return rep, err
		}
		rep.MaxAbs, rep.RelRMS = core.QuantStats(h, qh)
		rep.Scheme = scheme
		rep.Bytes = int64(len(qh.Codes))*4 + int64(len(qh.Scales))*4
		return rep, w.AddQuant(name, qh)
	}
	rep.Scheme = weights.F32
	if maybeF16 {
		if maxAbs, rel, ok := f16Error(h.Data); ok && rel <= F16MaxRelRMS {
			rep.Scheme, rep.MaxAbs, rep.RelRMS = weights.F16, maxAbs, rel
		}
	}
	rep.Bytes = payloadBytes(rep.Scheme, h.Shape)
	return rep, w.AddF32(name, h, rep.Scheme)
}

// payloadBytes is the stored size of a tensor of the given shape (weights/FORMAT.md, Tensor payloads).
func payloadBytes(s weights.Scheme, shape core.Shape) int64 {
	n := int64(shape.Numel())
	if q, ok := s.Quant(); ok && len(shape) == 2 {
		m, k := int64(shape[0]), shape[1]
		return m * (int64(q.WordsPerRow(k)) + int64(core.QuantBlocks(k))) * 4
	}
	if s == weights.F16 {
		return 2 * n
	}
	return 4 * n
}

// DownloadBytes is the size of the chunks Convert would write for these sources (the transformer's and
// the VQVAE's, without prefixes) with opt, computed without writing: what a browser downloads besides
// the manifest. Tensors that may be stored f16 are read to decide, exactly as Convert does; the others
// are sized from their shapes alone.
func DownloadBytes(varSrc, vaeSrc core.WeightSource, opt ConvertOptions) (int64, error) {
	if opt.Quant == "" {
		opt.Quant = weights.Int8
	}
	if !weights.Scheme(opt.Quant).Valid() {
		return 0, fmt.Errorf("quantization %q: want f32, f16, int8 or int4", opt.Quant)
	}
	var total int64
	for _, src := range []struct {
		s      core.WeightSource
		prefix string
	}{{varSrc, VARPrefix}, {vaeSrc, VAEPrefix}} {
		for _, n := range src.s.Names() {
			name := src.prefix + n
			if !opt.included(name) {
				continue
			}
			shape, _ := src.s.Shape(n)
			scheme, maybeF16 := opt.storage(name, shape.Numel())
			if maybeF16 {
				h, err := src.s.Load(n)
				if err != nil {
					return 0, fmt.Errorf("tensor %s: %w", name, err)
				}
				if _, rel, ok := f16Error(h.Data); ok && rel <= F16MaxRelRMS {
					scheme = weights.F16
				}
			}
			total += payloadBytes(scheme, shape)
		}
	}
	return total, nil
}

// QuantizedView serves a transformer source as Convert would store it with scheme q (int8 or int4): its
// quantizable Linear weights (varmodel.Quantizable) become packed core.QuantHost tensors through the
// core.QuantSource ability, so that core.Weights.LinearWeight uploads them quantized, and Load returns
// them dequantized, as a converted directory does. Other tensors pass through unchanged (f16 storage,
// which only rounds values, is not reproduced). It lets benchmarks and tests run the quantized path on
// a checkpoint without writing a weights directory.
func QuantizedView(src core.WeightSource, q weights.Scheme) (core.WeightSource, error) {
	qs, ok := q.Quant()
	if !ok {
		return nil, fmt.Errorf("quantized view: %q is not a quantized scheme (want int8 or int4)", q)
	}
	return quantView{src, qs}, nil
}

type quantView struct {
	core.WeightSource
	q core.QuantScheme
}

func (v quantView) Quant(name string) (core.QuantHost, bool) {
	if !varmodel.Quantizable(name) {
		return core.QuantHost{}, false
	}
	h, err := v.WeightSource.Load(name)
	if err != nil || len(h.Shape) != 2 {
		// Not quantizable after all: Load reports the error, or the model rejects the shape.
		return core.QuantHost{}, false
	}
	qh, err := core.Quantize(h, v.q)
	if err != nil {
		return core.QuantHost{}, false
	}
	return qh, true
}

func (v quantView) Load(name string) (core.HostTensor, error) {
	qh, ok := v.Quant(name)
	if !ok {
		return v.WeightSource.Load(name)
	}
	return qh.Dequantize()
}

// f16Error is the error f16 storage would add to x, and false if some value does not fit f16.
func f16Error(x []float32) (maxAbs, relRMS float64, ok bool) {
	var se, sx float64
	for _, v := range x {
		r, fits := weights.RoundF16(v)
		if !fits {
			return 0, 0, false
		}
		e := float64(r) - float64(v)
		maxAbs = math.Max(maxAbs, math.Abs(e))
		se += e * e
		sx += float64(v) * float64(v)
	}
	if sx == 0 {
		return maxAbs, 0, true
	}
	return maxAbs, math.Sqrt(se / sx), true
}

// MetaClassNames is the manifest meta key of the class names: a JSON array of strings, index = label.
const MetaClassNames = "class_names"

// ClassNames returns the class names stored at conversion, or nil.
func ClassNames(m *weights.Manifest) ([]string, error) {
	raw, ok := m.Meta[MetaClassNames]
	if !ok {
		return nil, nil
	}
	var names []string
	if err := json.Unmarshal([]byte(raw), &names); err != nil {
		return nil, fmt.Errorf("weights manifest: meta %s: %w", MetaClassNames, err)
	}
	return names, nil
}

// Converted splits a loaded weights directory into the transformer's and the VQVAE's weight sources and
// returns the patch_nums recorded at conversion.
func Converted(m *weights.Model) (varSrc, vaeSrc core.WeightSource, patchNums []int, err error) {
	man := m.Manifest()
	if man.Family != "var" {
		return nil, nil, nil, fmt.Errorf("weights family %q: this build runs \"var\"", man.Family)
	}
	if patchNums, err = man.ConfigInts("patch_nums"); err != nil {
		return nil, nil, nil, err
	}
	return prefixSource{m, VARPrefix}, prefixSource{m, VAEPrefix}, patchNums, nil
}

// LoadPipeline builds the models of a loaded weights directory on b, with the linear preview map of its
// metadata (MetaLinearPreview) when it has one; opt.PatchNums defaults to the ones recorded at conversion.
func LoadPipeline(m *weights.Model, b core.Backend, opt varmodel.Options) (*varmodel.Pipeline, error) {
	varSrc, vaeSrc, pn, err := Converted(m)
	if err != nil {
		return nil, err
	}
	if opt.PatchNums == nil {
		opt.PatchNums = pn
	}
	p, err := varmodel.LoadPipeline(varSrc, vaeSrc, b, opt)
	if err != nil {
		return nil, err
	}
	if p.LinearPreview, err = LinearPreviewOf(m.Manifest(), p.VAE.Config().Cvae); err != nil {
		return nil, err
	}
	return p, nil
}

// prefixSource is the view of a converted model under one name prefix, with the prefix removed.
type prefixSource struct {
	m      *weights.Model
	prefix string
}

func (p prefixSource) Names() []string {
	var out []string
	for _, n := range p.m.Names() {
		if strings.HasPrefix(n, p.prefix) {
			out = append(out, strings.TrimPrefix(n, p.prefix))
		}
	}
	return out
}

func (p prefixSource) Shape(name string) (core.Shape, bool) { return p.m.Shape(p.prefix + name) }

func (p prefixSource) Load(name string) (core.HostTensor, error) { return p.m.Load(p.prefix + name) }

func (p prefixSource) Quant(name string) (core.QuantHost, bool) { return p.m.Quant(p.prefix + name) }
