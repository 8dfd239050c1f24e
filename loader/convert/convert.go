// Package convert turns official checkpoints into webvar's weights directory (weights/FORMAT.md) and
// reads such a directory back as the models' weight sources.
package convert

import (
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/family"
	"github.com/webvar/webvar/core/gen"
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
// ignore them): each family's (family.Family.SkippedVAR, SkippedVAE), such as VAR's lvl_1L and the
// training masks (L^2 floats), and the tokenizers' codebook usage statistics.
func skipped(name string) bool {
	for _, f := range family.All() {
		for _, n := range f.SkippedVAR {
			if name == VARPrefix+n {
				return true
			}
		}
		for _, n := range f.SkippedVAE {
			if name == VAEPrefix+n {
				return true
			}
		}
		for _, pfx := range f.SkippedVAEPrefixes {
			if strings.HasPrefix(name, VAEPrefix+pfx) {
				return true
			}
		}
	}
	return false
}

// ConvertOptions configure Convert.
type ConvertOptions struct {
	PatchNums []int   // as for generate; recorded in the manifest
	Heads     int     // as for generate (checkpoints without l2-norm attention; MAR's encoder, RQ's body)
	DecHeads  int     // MAR's decoder, RQ's head transformer, when they differ from Heads
	VAEScale  float64 // MAR: the latent scale of a VAE other than the released KL-16 (recorded as vae_scale)
	// Quant is the scheme of the transformer's Linear weights (those its family's tensor table marks
	// Quantizable). With f16, int8 or int4, the other float tensors are stored f16 when that costs little
	// precision (see F16MaxRelRMS) and f32 otherwise; with f32 everything is f32.
	Quant weights.Scheme
	// VAEQuant is the storage of the VQVAE decoder's convolution weights (VAEQuantizable): int8 or int4
	// quantize each output channel's Ci·kh·kw weights blockwise like a Linear weight's row (the engine
	// dequantizes them when loading and still convolves in float: only the download shrinks); f16 stores
	// them f16 where that costs little precision, else f32; f32 keeps them exact. "" means
	// VAEQuantFor(Quant).
	VAEQuant weights.Scheme
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
	// Settings, when set, are stored in the meta as the model's default settings by gen setting name
	// (MetaSettingPrefix + name), for any family's settings (MAR's iters, diffusion-steps, ...); they
	// override Sampling's. The family checks them when the model is loaded.
	Settings gen.Settings
	// linearOf is the family's Quantizer, set from the checkpoint's family and config (default: none).
	linearOf func(string) bool
	// OnTensor is called after each tensor is written (progress and the error it introduced).
	OnTensor func(TensorReport)
}

// DefaultQuant is ConvertOptions.Quant when not given: int4 transformer Linear weights (with
// VAEQuantFor's int8 decoder), the only storage that puts VAR-d16 under issue 7's 250 MB download budget
// (246.8 MB, against 407.4 MB with int8; `webvar bench -model d16 -download`). What it costs is measured
// in README.md (Performance, download size); -quant int8 is the high-fidelity choice.
const DefaultQuant = weights.Int4

// VAEQuantFor is the VQVAE decoder's storage when ConvertOptions.VAEQuant is not given: the
// transformer's scheme, except int8 for an int4 transformer. The decoder is where quantization error
// reaches the pixels directly: on the trained fashionvar model the int8 decoder's images are 64 dB from
// the f16 decoder's (invisible) and the int4 decoder's 38 dB (README.md, Performance), and int8 costs
// VAR-d16 32 MB more than int4.
func VAEQuantFor(quant weights.Scheme) weights.Scheme {
	if quant == weights.Int4 {
		return weights.Int8
	}
	return quant
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

// normalize checks the options and fills in the defaults (Quant DefaultQuant, VAEQuant
// VAEQuantFor(Quant)).
// quantizable reports whether a transformer tensor (name without prefix) is a Linear weight of the
// model's family.
func (opt ConvertOptions) quantizable(name string) bool {
	return opt.linearOf != nil && opt.linearOf(name)
}

// familyOptions are what the family needs besides the checkpoint to infer its architecture.
func (opt ConvertOptions) familyOptions() family.Options {
	return family.Options{PatchNums: opt.PatchNums, Heads: opt.Heads, DecHeads: opt.DecHeads, VAEScale: opt.VAEScale}
}

func (opt *ConvertOptions) normalize() error {
	if opt.Quant == "" {
		opt.Quant = DefaultQuant
	}
	if !opt.Quant.Valid() {
		return fmt.Errorf("quantization %q: want f32, f16, int8 or int4", opt.Quant)
	}
	if opt.VAEQuant == "" {
		opt.VAEQuant = VAEQuantFor(opt.Quant)
	}
	if !opt.VAEQuant.Valid() {
		return fmt.Errorf("VQVAE decoder quantization %q: want f32, f16, int8 or int4", opt.VAEQuant)
	}
	for _, g := range opt.KeepF32 {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("keep-f32 pattern %q: %w", g, err)
		}
	}
	return nil
}

// Convert reads varPath and vaePath (.pth or .safetensors) and writes the weights directory outDir.
func Convert(varPath, vaePath, outDir string, opt ConvertOptions) (*weights.Manifest, error) {
	if err := opt.normalize(); err != nil {
		return nil, err
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
	from := path.Base(varPath) + " + " + path.Base(vaePath)
	return convertSources(vc.WeightSource(), ac.WeightSource(), varPath, from, outDir, opt, nil)
}

// ConvertSources is Convert for sources already opened (an RQ release's model.pt state dicts, say); name
// says where they come from in the manifest and messages.
func ConvertSources(varSrc, vaeSrc core.WeightSource, name, outDir string, opt ConvertOptions) (*weights.Manifest, error) {
	if err := opt.normalize(); err != nil {
		return nil, err
	}
	return convertSources(varSrc, vaeSrc, name, name, outDir, opt, nil)
}

// Reconvert writes a converted weights directory m again into outDir with other storage options: to
// store the shipped default model's decoder quantized, say, when its training checkpoints are gone. Its
// tensors are read as Load serves them (quantized ones dequantized), so the errors reported and the
// error introduced add to the ones of m's own conversion (re-quantizing int8 values to int8 gives them
// back). PatchNums, the head counts, MAR's VAE scale, ClassNames and Sampling default to m's (what its
// manifest recorded that no tensor says), a directory without the encoder stays without it, and m's other
// meta entries are kept.
func Reconvert(m *weights.Model, outDir string, opt ConvertOptions) (*weights.Manifest, error) {
	if err := opt.normalize(); err != nil {
		return nil, err
	}
	varSrc, vaeSrc, _, pn, err := Converted(m)
	if err != nil {
		return nil, err
	}
	man := m.Manifest()
	if opt.PatchNums == nil {
		opt.PatchNums = pn
	}
	if opt.Heads == 0 {
		if h, err := man.ConfigInt("heads"); err == nil {
			opt.Heads = h
		}
	}
	if opt.DecHeads == 0 {
		if h, err := man.ConfigInt("dec_heads"); err == nil {
			opt.DecHeads = h
		}
	}
	if opt.VAEScale == 0 { // MAR: a VAE's own latent scale (fashionmar's is not the KL-16's 0.2325)
		if f, err := man.ConfigFloat("vae_scale"); err == nil {
			opt.VAEScale = f
		}
	}
	if man.Meta["vae_encoder"] == "false" {
		opt.NoEncoder = true // nothing to include; keep the meta truthful
	}
	if opt.ClassNames == nil {
		if opt.ClassNames, err = ClassNames(man); err != nil {
			return nil, err
		}
	}
	if opt.Sampling == nil {
		if opt.Sampling, err = SamplingOf(man); err != nil {
			return nil, err
		}
	}
	if opt.Settings == nil {
		opt.Settings = SettingsOf(man)
	}
	from := "webvar weights"
	if f := man.Meta["converted_from"]; f != "" {
		from += " (converted from " + f + ")"
	}
	// Tensors in the source's order (prefixSource lists them sorted).
	order := map[string][]string{}
	for _, t := range man.Tensors {
		for _, p := range []string{VARPrefix, VAEPrefix} {
			if n, ok := strings.CutPrefix(t.Name, p); ok {
				order[p] = append(order[p], n)
			}
		}
	}
	return convertSources(orderedSource{varSrc, order[VARPrefix]}, orderedSource{vaeSrc, order[VAEPrefix]},
		"weights", from, outDir, opt, man.Meta)
}

// orderedSource lists a source's tensors in a given order.
type orderedSource struct {
	core.WeightSource
	names []string
}

func (o orderedSource) Names() []string { return o.names }

// convertSources writes the transformer's and the VQVAE's tensors (names without prefix, in Names order)
// into outDir. keepMeta entries are kept unless the conversion sets them. opt must be normalized.
func convertSources(varSrc, vaeSrc core.WeightSource, varName, from, outDir string, opt ConvertOptions,
	keepMeta map[string]string) (*weights.Manifest, error) {
	fam, err := family.Detect(varSrc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", varName, err)
	}
	config, err := fam.Config(varSrc, opt.familyOptions())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", varName, err)
	}
	if opt.linearOf, err = fam.Quantizer(varSrc, opt.familyOptions()); err != nil {
		return nil, fmt.Errorf("%s: %w", varName, err)
	}
	if classes := config["classes"].(int); opt.ClassNames != nil && len(opt.ClassNames) != classes {
		return nil, fmt.Errorf("%d class names for a model with %d classes", len(opt.ClassNames), classes)
	}
	if opt.Sampling != nil {
		if err := opt.Sampling.Validate(); err != nil {
			return nil, err
		}
	}

	type item struct {
		name string // with prefix
		key  string // in its source
		src  core.WeightSource
	}
	var items []item
	for _, src := range []struct {
		s      core.WeightSource
		prefix string
	}{{varSrc, VARPrefix}, {vaeSrc, VAEPrefix}} {
		for _, n := range src.s.Names() {
			if opt.included(src.prefix + n) {
				items = append(items, item{src.prefix + n, n, src.s})
			}
		}
	}

	w, err := weights.NewWriter(outDir, weights.WriterOptions{ChunkBytes: opt.ChunkBytes})
	if err != nil {
		return nil, err
	}
	for i, it := range items {
		h, err := it.src.Load(it.key)
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
	meta := map[string]string{}
	for k, v := range keepMeta {
		meta[k] = v
	}
	for _, k := range []string{MetaClassNames, MetaCFG, MetaTopK, MetaTopP, MetaMoreSmooth} {
		delete(meta, k) // set below from opt, which a reconversion fills from them
	}
	meta["converted_from"] = from
	meta["quant"] = string(opt.Quant)
	meta[MetaVAEQuant] = string(opt.VAEQuant)
	meta["vae_encoder"] = fmt.Sprint(!opt.NoEncoder)
	if opt.ClassNames != nil {
		names, err := json.Marshal(opt.ClassNames)
		if err != nil {
			w.Abort()
			return nil, err
		}
		meta[MetaClassNames] = string(names)
	}
	if opt.Sampling != nil {
		for k, v := range opt.Sampling.Meta() {
			meta[k] = v
		}
	}
	for k, v := range opt.Settings {
		meta[MetaSettingPrefix+k] = v
	}
	return w.Close(fam.Name, config, meta)
}

// MetaVAEQuant is the manifest meta key recording ConvertOptions.VAEQuant (provenance only: each
// tensor's entry says how it is stored).
const MetaVAEQuant = "vae_quant"

// included reports whether Convert writes the tensor name (with its var./vae. prefix).
func (opt ConvertOptions) included(name string) bool {
	if opt.NoEncoder && (strings.HasPrefix(name, VAEPrefix+"encoder.") || strings.HasPrefix(name, VAEPrefix+"quant_conv.")) {
		return false
	}
	return !skipped(name)
}

// VAEQuantizable reports whether a VQVAE tensor (name without the vae. prefix, as in the official
// checkpoint) is a decoder convolution weight that ConvertOptions.VAEQuant may store quantized: a rank-4
// "decoder.*.weight" of at least f32Below values (64.6M of VAR-d16's 65M decoder parameters). The
// encoder (tokenizing images for editing), post_quant_conv, the codebook and the Phi convolutions (which
// feed the transformer's next-scale input during generation) keep the float rule.
func VAEQuantizable(name string, shape core.Shape) bool {
	return strings.HasPrefix(name, "decoder.") && strings.HasSuffix(name, ".weight") && len(shape) == 4 &&
		shape.Numel() >= f32Below
}

// storage is the scheme Convert gives a tensor as far as its name and shape decide it: the quantized
// scheme of a transformer Linear weight or a decoder conv weight, f32, or, with maybeF16, f16 if the
// values fit f16 within F16MaxRelRMS (see f16Error) and f32 otherwise. opt must be normalized.
func (opt ConvertOptions) storage(name string, shape core.Shape) (s weights.Scheme, maybeF16 bool) {
	for _, g := range opt.KeepF32 {
		if ok, _ := path.Match(g, name); ok {
			return weights.F32, false
		}
	}
	floatRule := opt.Quant
	if n, ok := strings.CutPrefix(name, VARPrefix); ok && opt.quantizable(n) {
		if _, ok := opt.Quant.Quant(); ok {
			return opt.Quant, false
		}
	}
	if n, ok := strings.CutPrefix(name, VAEPrefix); ok && VAEQuantizable(n, shape) {
		if _, ok := opt.VAEQuant.Quant(); ok {
			return opt.VAEQuant, false
		}
		floatRule = opt.VAEQuant
	}
	return weights.F32, floatRule != weights.F32 && shape.Numel() >= f32Below
}

// convertTensor chooses the storage of one tensor, writes it and reports the error it introduced.
func convertTensor(w *weights.Writer, name string, h core.HostTensor, opt ConvertOptions) (TensorReport, error) {
	rep := TensorReport{Name: name, Shape: h.Shape}
	scheme, maybeF16 := opt.storage(name, h.Shape)
	if _, ok := scheme.Quant(); ok {
		qh, err := quantizeRows(h, scheme)
		if err != nil {
			return rep, err
		}
		rows := core.HostTensor{Shape: qh.Shape, Data: h.Data}
		rep.MaxAbs, rep.RelRMS = core.QuantStats(rows, qh)
		rep.Scheme = scheme
		if rep.Bytes, err = weights.QuantPayloadBytes(scheme, weights.ScalesFor(qh), h.Shape); err != nil {
			return rep, err
		}
		return rep, w.AddQuantAs(name, qh, h.Shape)
	}
	rep.Scheme = weights.F32
	if maybeF16 {
		if maxAbs, rel, ok := f16Error(h.Data); ok && rel <= F16MaxRelRMS {
			rep.Scheme, rep.MaxAbs, rep.RelRMS = weights.F16, maxAbs, rel
		}
	}
	var err error
	if rep.Bytes, err = weights.PayloadBytes(rep.Scheme, h.Shape); err != nil {
		return rep, err
	}
	return rep, w.AddF32(name, h, rep.Scheme)
}

// quantizeOptions is how Convert quantizes: each block's scale searched for the least squared error and
// rounded to float16, so that the format stores it in 2 bytes (core.QuantizeOptions). For int4 this
// cuts the weight's squared error by about a tenth against absmax scaling, and the scales' bytes by half
// (the whole payload by a tenth), at no cost to loading or speed: the stored layout is the same codes and
// scales.
func quantizeOptions() core.QuantizeOptions {
	return core.QuantizeOptions{Search: true, F16Scales: true}
}

// quantizeRows quantizes h with scheme s (int8 or int4) as the [M, K] rows the format stores it as
// (weights.QuantRows): a conv weight [Co, Ci, kh, kw] as [Co, Ci·kh·kw].
func quantizeRows(h core.HostTensor, s weights.Scheme) (core.QuantHost, error) {
	qs, ok := s.Quant()
	if !ok {
		return core.QuantHost{}, fmt.Errorf("%q is not a quantized scheme (want int8 or int4)", s)
	}
	M, K, err := weights.QuantRows(h.Shape)
	if err != nil {
		return core.QuantHost{}, err
	}
	return core.QuantizeWith(core.HostTensor{Shape: core.Shape{M, K}, Data: h.Data}, qs, quantizeOptions())
}

// DownloadSize is the size of a converted directory's chunks, per model: what a browser downloads
// besides the manifest.
type DownloadSize struct {
	Transformer, VQVAE int64 // bytes of the var. and of the vae. tensors
}

// Total is the bytes of all chunks.
func (d DownloadSize) Total() int64 { return d.Transformer + d.VQVAE }

// DownloadSizes is the size of the chunks Convert would write for these sources (the transformer's and
// the VQVAE's, without prefixes) with opt, computed without writing. Tensors that may be stored f16 are
// read to decide, exactly as Convert does, and so are quantized ones, whose scales take 2 or 4 bytes
// (core.F16ScalesFit); the others are sized from their shapes alone.
func DownloadSizes(varSrc, vaeSrc core.WeightSource, opt ConvertOptions) (DownloadSize, error) {
	if err := opt.normalize(); err != nil {
		return DownloadSize{}, err
	}
	if fam, err := family.Detect(varSrc); err == nil {
		if opt.linearOf, err = fam.Quantizer(varSrc, opt.familyOptions()); err != nil {
			return DownloadSize{}, err
		}
	}
	var size DownloadSize
	for _, src := range []struct {
		s      core.WeightSource
		prefix string
		total  *int64
	}{{varSrc, VARPrefix, &size.Transformer}, {vaeSrc, VAEPrefix, &size.VQVAE}} {
		for _, n := range src.s.Names() {
			name := src.prefix + n
			if !opt.included(name) {
				continue
			}
			shape, _ := src.s.Shape(n)
			scheme, maybeF16 := opt.storage(name, shape)
			scales := weights.F32
			qs, quant := scheme.Quant()
			if maybeF16 || quant {
				h, err := src.s.Load(n)
				if err != nil {
					return DownloadSize{}, fmt.Errorf("tensor %s: %w", name, err)
				}
				if _, rel, ok := f16Error(h.Data); maybeF16 && ok && rel <= F16MaxRelRMS {
					scheme = weights.F16
				}
				if M, K, err := weights.QuantRows(shape); quant && err == nil &&
					core.F16ScalesFit(core.HostTensor{Shape: core.Shape{M, K}, Data: h.Data}, qs) {
					scales = weights.F16 // QuantizeWith's rule, without quantizing
				}
			}
			b, err := weights.QuantPayloadBytes(scheme, scales, shape)
			if err != nil {
				return DownloadSize{}, fmt.Errorf("tensor %s: %w", name, err)
			}
			*src.total += b
		}
	}
	return size, nil
}

// DownloadBytes is DownloadSizes(varSrc, vaeSrc, opt).Total().
func DownloadBytes(varSrc, vaeSrc core.WeightSource, opt ConvertOptions) (int64, error) {
	size, err := DownloadSizes(varSrc, vaeSrc, opt)
	return size.Total(), err
}

// QuantizedView serves a transformer source as Convert would store it with scheme q (int8 or int4): its
// quantizable Linear weights (its family's tensor table's, for the architecture inferred without
// options) become packed core.QuantHost tensors through the core.QuantSource ability, so that
// core.Weights.LinearWeight uploads them quantized, and Load returns them dequantized, as a converted
// directory does. Other tensors pass through unchanged (f16 storage, which only rounds values, is not
// reproduced). It lets benchmarks and tests run the quantized path on a checkpoint without writing a
// weights directory. A checkpoint of no known family, or whose architecture cannot be inferred, is an
// error.
func QuantizedView(src core.WeightSource, q weights.Scheme) (core.WeightSource, error) {
	if _, ok := q.Quant(); !ok {
		return nil, fmt.Errorf("quantized view: %q is not a quantized scheme (want int8 or int4)", q)
	}
	f, err := family.Detect(src)
	if err != nil {
		return nil, fmt.Errorf("quantized view: %w", err)
	}
	quantizable, err := f.Quantizer(src, family.Options{})
	if err != nil {
		return nil, fmt.Errorf("quantized view: %w", err)
	}
	return quantView{src, q, quantizable}, nil
}

type quantView struct {
	core.WeightSource
	q           weights.Scheme
	quantizable func(string) bool // the family's Linear weights
}

// quantized is h, the tensor name as loaded, as Convert stores it: packed, or ok false for a tensor
// Convert keeps in float (not a quantizable name; other ranks are the model's to reject). A quantizable
// tensor that cannot be quantized (a non-finite weight) is an error naming it, as it is for Convert,
// rather than served unquantized.
func (v quantView) quantized(name string, h core.HostTensor) (qh core.QuantHost, ok bool, err error) {
	if !v.quantizable(name) || len(h.Shape) != 2 {
		return core.QuantHost{}, false, nil
	}
	if qh, err = quantizeRows(h, v.q); err != nil {
		return core.QuantHost{}, false, &core.WeightError{Tensor: name, Msg: err.Error()}
	}
	return qh, true, nil
}

// Quant is the packed tensor (core.QuantSource); false also when loading or quantizing failed, which
// Load reports.
func (v quantView) Quant(name string) (core.QuantHost, bool) {
	if !v.quantizable(name) {
		return core.QuantHost{}, false
	}
	h, err := v.WeightSource.Load(name)
	if err != nil {
		return core.QuantHost{}, false
	}
	qh, ok, err := v.quantized(name, h)
	return qh, ok && err == nil
}

func (v quantView) Load(name string) (core.HostTensor, error) {
	h, err := v.WeightSource.Load(name)
	if err != nil {
		return core.HostTensor{}, err
	}
	qh, ok, err := v.quantized(name, h)
	switch {
	case err != nil:
		return core.HostTensor{}, err
	case !ok:
		return h, nil
	}
	return qh.Dequantize()
}

// VAEQuantizedView serves a VQVAE source (without the vae. prefix) as Convert would store it with
// VAEQuant q (int8 or int4): the decoder conv weights (VAEQuantizable) are quantized and dequantized on
// Load, as a converted directory serves them; other tensors pass through unchanged. Benchmarks and
// quality measurements use it to run a checkpoint with the stored decoder's values.
func VAEQuantizedView(src core.WeightSource, q weights.Scheme) (core.WeightSource, error) {
	if _, ok := q.Quant(); !ok {
		return nil, fmt.Errorf("quantized VQVAE view: %q is not a quantized scheme (want int8 or int4)", q)
	}
	return vaeQuantView{src, q}, nil
}

type vaeQuantView struct {
	core.WeightSource
	q weights.Scheme
}

func (v vaeQuantView) Load(name string) (core.HostTensor, error) {
	h, err := v.WeightSource.Load(name)
	if err != nil || !VAEQuantizable(name, h.Shape) {
		return h, err
	}
	qh, err := quantizeRows(h, v.q)
	if err != nil {
		return core.HostTensor{}, &core.WeightError{Tensor: name, Msg: err.Error()}
	}
	dq, err := qh.Dequantize()
	if err != nil {
		return core.HostTensor{}, &core.WeightError{Tensor: name, Msg: err.Error()}
	}
	dq.Shape = h.Shape.Clone()
	return dq, nil
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

// Converted splits a loaded weights directory into the transformer's and the tokenizer's weight sources
// and returns its family and the schedule (patch_nums) recorded at conversion.
func Converted(m *weights.Model) (varSrc, vaeSrc core.WeightSource, fam family.Family, patchNums []int, err error) {
	man := m.Manifest()
	if fam, err = family.ByName(man.Family); err != nil {
		return nil, nil, fam, nil, fmt.Errorf("weights: %w", err)
	}
	if _, ok := man.Config["patch_nums"]; ok || fam.Name == "var" || fam.Name == "flexvar" { // scale families
		if patchNums, err = man.ConfigInts("patch_nums"); err != nil {
			return nil, nil, fam, nil, err
		}
	}
	return prefixSource{m, VARPrefix}, prefixSource{m, VAEPrefix}, fam, patchNums, nil
}

// LoadPipeline builds the VAR models of a loaded weights directory on b, with the linear preview map of
// its metadata (MetaLinearPreview) when it has one; opt.PatchNums defaults to the ones recorded at
// conversion. Other families: LoadGenerator.
func LoadPipeline(m *weights.Model, b core.Backend, opt varmodel.Options) (*varmodel.Pipeline, error) {
	varSrc, vaeSrc, fam, pn, err := Converted(m)
	if err != nil {
		return nil, err
	}
	if fam.Name != "var" {
		return nil, fmt.Errorf("weights: a %s model, where a VAR model is needed", fam.Title)
	}
	if opt.PatchNums == nil {
		opt.PatchNums = pn
	}
	if opt.Heads == 0 { // recorded at conversion: without l2-norm attention no tensor says it
		if h, err := m.Manifest().ConfigInt("heads"); err == nil {
			opt.Heads = h
		}
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

// Defaults are a converted model's own settings by gen setting name: its sampling metadata (Sampling)
// and, for FlexVAR, the schedule recorded at conversion.
func Defaults(m *weights.Manifest) (gen.Settings, error) {
	d := gen.Settings{}
	s, err := SamplingOf(m)
	if err != nil {
		return nil, err
	}
	if s != nil {
		d["cfg"] = strconv.FormatFloat(s.CFG, 'g', -1, 64)
		d["top-k"] = strconv.Itoa(s.TopK)
		d["top-p"] = strconv.FormatFloat(s.TopP, 'g', -1, 64)
		d["more-smooth"] = strconv.FormatBool(s.MoreSmooth)
	}
	if m.Family == "flexvar" {
		if pn, err := m.ConfigInts("patch_nums"); err == nil {
			d["schedule"] = gen.JoinInts(pn)
		}
	}
	for k, v := range SettingsOf(m) {
		d[k] = v
	}
	return d, nil
}

// LoadGenerator builds a loaded weights directory's models, of any family, on b as a gen.Generator with
// the model's own default settings. A VAR model gets its linear preview map.
func LoadGenerator(m *weights.Model, b core.Backend, opt family.Options) (gen.Generator, error) {
	varSrc, vaeSrc, fam, pn, err := Converted(m)
	if err != nil {
		return nil, err
	}
	d, err := Defaults(m.Manifest())
	if err != nil {
		return nil, err
	}
	if fam.Name == "var" {
		p, err := LoadPipeline(m, b, varmodel.Options{PatchNums: opt.PatchNums, Heads: opt.Heads})
		if err != nil {
			return nil, err
		}
		s, err := family.VARSampling(d)
		if err != nil {
			return nil, err
		}
		return p.Generator(b, s), nil
	}
	if opt.PatchNums == nil {
		opt.PatchNums = pn
	}
	// Head counts no tensor says: the ones recorded at conversion.
	man := m.Manifest()
	if opt.Heads == 0 {
		if h, err := man.ConfigInt("heads"); err == nil {
			opt.Heads = h
		}
	}
	if opt.DecHeads == 0 {
		if h, err := man.ConfigInt("dec_heads"); err == nil {
			opt.DecHeads = h
		}
	}
	if opt.VAEScale == 0 {
		if f, err := man.ConfigFloat("vae_scale"); err == nil {
			opt.VAEScale = f
		}
	}
	return fam.Load(varSrc, vaeSrc, b, opt, d)
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
