package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
)

func runConvert(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	varPath := fs.String("var", "", "VAR transformer checkpoint (.pth or .safetensors)")
	vaePath := fs.String("vae", "", "VQVAE checkpoint (.pth or .safetensors)")
	patchNums := fs.String("patch-nums", "", "token map sides per scale (as for generate)")
	heads := fs.Int("heads", 0, "attention heads, only for checkpoints without l2-norm attention (MAR: the encoder's); recorded in the manifest")
	decHeads := fs.Int("dec-heads", 0, "MAR: the decoder's attention heads when they differ from -heads; recorded in the manifest")
	vaeScale := fs.Float64("vae-scale", 0, "MAR: the latent scale of a VAE other than the released KL-16 (tokens = latents * scale; default 0.2325), recorded in the manifest")
	rqPath := fs.String("rq", "", "an RQ-Transformer release (directory with stage1/ and stage2/, or its .tar.gz) instead of -var and -vae: head counts and default sampling come from its config.yaml")
	ema := fs.Bool("ema", false, "with -rq: convert the RQ-Transformer's EMA weights (stage2's state_dict_ema; the RQ-VAE's state_dict as officially)")
	from := fs.String("from", "", "a converted weights directory to convert again (other storage options) instead of -var and -vae; its tensors are read as stored (quantized ones dequantized), its class names, sampling settings and patch_nums kept unless given")
	quant := fs.String("quant", string(convert.DefaultQuant), "storage of the transformer's Linear weights: f32, f16, int8 or int4 (blockwise, 32 weights per float16 scale; other tensors: f16 where its measured error is small, else f32); int8 is the high-fidelity choice, int4 keeps VAR-d16 under 250 MB")
	vaeQuant := fs.String("vae-quant", "", "storage of the VQVAE decoder's convolution weights: f32, f16 (f16 where its measured error is small, else f32), int8 or int4 (blockwise per output channel, dequantized when loaded: a smaller download, the same float convolutions) (default: as -quant, but int8 when -quant is int4)")
	keep := fs.String("keep-f32", "", "comma-separated name patterns (path.Match, with the var./vae. prefix) stored f32 regardless, e.g. 'var.head.weight,vae.*'")
	chunkMiB := fs.Int("chunk-mib", 4, "chunk file size in MiB (a larger tensor gets a chunk of its own)")
	chunkKiB := fs.Int("chunk-kib", 0, "chunk file size in KiB instead of -chunk-mib (for tiny models: more, smaller chunks)")
	out := fs.String("out", "", "output directory")
	classNames := fs.String("class-names", "", "a text file of class names, one per line (line i = class i), stored in the weights' metadata; e.g. ImageNet's for official checkpoints")
	noEncoder := fs.Bool("no-encoder", false, "leave out the VQVAE encoder: enough to generate, smaller to download; images cannot be tokenized (edited) with it")
	var settings settingFlags
	fs.Var(&settings, "set", "a default setting of the model by its family's setting name, name=value (repeatable; e.g. MAR's iters=16): stored in its metadata like -sampling")
	sampling := fs.String("sampling", "", "the model's default sampling settings, stored in its metadata and used by generate/serve/preview unless flags override them: cfg=F,top_k=N,top_p=F[,more_smooth=true]")
	previewFit := fs.Int("preview-fit", 8, "after converting, generate this many images on the CPU (classes spread over the model's, seeds 0..N-1, "+
		"the model's sampling settings), decode every scale at full quality and fit the linear preview map (-previews linear) to them "+
		"by least squares; stored in the metadata (0: none, previews linear then fall back to fast)")
	refit := fs.String("weights", "", "instead of converting: fit the linear preview map of this converted directory (with -preview-fit N images) "+
		"and rewrite only its manifest; the chunks stay as they are")
	verify := fs.Int("verify", 2, "after converting, generate this many greedy images (classes 0..N-1, cfg 4) from both the checkpoints and the converted weights on the CPU and report token agreement and PSNR (0: skip)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	case *previewFit < 0:
		return usageError{"-preview-fit must be >= 0"}
	case *refit != "" && (*varPath != "" || *vaePath != "" || *out != "" || *from != ""):
		return usageError{"-weights DIR refits the preview map of a converted directory in place: give it without -var, -vae and -out (and without -from)"}
	case *refit != "" && *previewFit == 0:
		return usageError{"-weights DIR needs -preview-fit N >= 1 (the images to fit the preview map to)"}
	case *refit != "":
		return fitPreviewMap(*refit, *heads, *previewFit, stdout, stderr)
	case *rqPath != "" && (*varPath != "" || *vaePath != "" || *from != ""):
		return usageError{"give one of -rq, -from and -var/-vae"}
	case *ema && *rqPath == "":
		return usageError{"-ema goes with -rq"}
	case *from != "" && (*varPath != "" || *vaePath != ""):
		return usageError{"give either -from or -var and -vae, not both"}
	case *from == "" && *rqPath == "" && (*varPath == "" || *vaePath == ""):
		return usageError{"-var and -vae are required (the checkpoints to convert), or -from (a converted directory)"}
	case *out == "":
		return usageError{"-out is required (the directory to write)"}
	case *from != "" && filepath.Clean(*from) == filepath.Clean(*out):
		return usageError{"-out must differ from -from (an interrupted conversion would leave neither)"}
	case *chunkMiB < 1:
		return usageError{"-chunk-mib must be >= 1"}
	case *chunkKiB < 0:
		return usageError{"-chunk-kib must be >= 1"}
	case *verify < 0:
		return usageError{"-verify must be >= 0"}
	}
	pn, err := parseInts(*patchNums)
	if err != nil {
		return usageError{"-patch-nums: " + err.Error()}
	}
	var keepF32 []string
	for _, g := range strings.Split(*keep, ",") {
		if g = strings.TrimSpace(g); g != "" {
			keepF32 = append(keepF32, g)
		}
	}
	var names []string
	if *classNames != "" {
		data, err := os.ReadFile(*classNames)
		if err != nil {
			return err
		}
		names = strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		for i := range names {
			names[i] = strings.TrimSpace(names[i])
		}
	}
	samp, err := parseSampling(*sampling)
	if err != nil {
		return usageError{"-sampling: " + err.Error()}
	}
	var stored, raw int64
	parts := map[string]int64{}
	opt := convert.ConvertOptions{Sampling: samp, Settings: gen.Settings(settings), PatchNums: pn, Heads: *heads, DecHeads: *decHeads, VAEScale: *vaeScale, Quant: weights.Scheme(*quant),
		VAEQuant: weights.Scheme(*vaeQuant), KeepF32: keepF32,
		NoEncoder: *noEncoder, ClassNames: names, ChunkBytes: chunkBytes(*chunkMiB, *chunkKiB),
		OnTensor: func(r convert.TensorReport) {
			stored += r.Bytes
			parts[strings.SplitN(r.Name, ".", 2)[0]] += r.Bytes
			raw += int64(r.Shape.Numel()) * 4
			errs := "exact"
			if r.Scheme != weights.F32 {
				errs = fmt.Sprintf("max err %.3g, rel RMS %.3g", r.MaxAbs, r.RelRMS)
			}
			fmt.Fprintf(stderr, "[%4d/%d] %-48s %-4s %-18v %9.3f MB  %s\n", r.Index+1, r.Total, r.Name, r.Scheme,
				r.Shape, float64(r.Bytes)/1e6, errs)
		}}
	ref := modelFlags{varPath: *varPath, vaePath: *vaePath, weightsDir: *from, heads: *heads, decHeads: *decHeads, patchNums: *patchNums, rqPath: *rqPath, ema: *ema, vaeScale: *vaeScale}
	var man *weights.Manifest
	if *rqPath != "" {
		man, err = convertRelease(*rqPath, *ema, *out, opt)
	} else if *from != "" {
		m, err := weights.Load(context.Background(), weights.DirSource(*from), weights.LoadOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", *from, err)
		}
		man, err = convert.Reconvert(m, *out, opt)
	} else {
		man, err = convert.Convert(*varPath, *vaePath, *out, opt)
	}
	if err != nil {
		return headsHint(err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d tensors in %d chunks, %.1f MB (transformer %.1f MB, VQVAE %.1f MB; %.1f MB as f32)\n",
		*out, len(man.Tensors), len(man.Chunks), float64(stored)/1e6, float64(parts["var"])/1e6, float64(parts["vae"])/1e6,
		float64(raw)/1e6)
	if *previewFit > 0 && man.Family != "var" {
		// Linear previews map VAR's accumulated latent to RGB; a FlexVAR step is a whole image of its own,
		// which the app decodes at the step's size.
		fmt.Fprintf(stdout, "no preview map for a %s model: its previews are each step's own decode\n", man.Family)
	} else if *previewFit > 0 {
		if err := fitPreviewMap(*out, *heads, *previewFit, stdout, stderr); err != nil {
			return err
		}
	}
	if *verify == 0 {
		return nil
	}
	return verifyConversion(&ref, *out, *heads, *verify, stdout)
}

// verifyConversion generates greedy images from the source (checkpoints or, with -from, the directory
// converted again) and from the converted directory and reports how many tokens agree and the images'
// PSNR.
func verifyConversion(source *modelFlags, dir string, heads, n int, stdout io.Writer) error {
	b := cpu.New(0)
	ref, _, err := source.openGenerator(context.Background(), b, nil)
	if err != nil {
		return err
	}
	conv, _, err := (&modelFlags{weightsDir: dir, heads: heads}).openGenerator(context.Background(), b, nil)
	if err != nil {
		return err
	}
	classes := ref.Info().Classes
	same, total := 0, 0
	minPSNR, sumPSNR := math.Inf(1), 0.0
	// Greedy with cfg 4 and both models' defaults otherwise (the schedule recorded at conversion). A
	// family without token ids (MAR) runs its defaults with the same seed on both: the same random
	// draws, so the images differ only by what the storage changed.
	settings := gen.Settings{"top-k": "1"}
	if hasSetting(ref.Settings(), "cfg") {
		settings["cfg"] = "4"
	}
	greedy := hasSetting(ref.Settings(), "top-k")
	if !greedy {
		// The converted model's defaults (its -set settings) on both.
		if settings, err = gen.Values(conv.Settings(), nil); err != nil {
			return err
		}
	}
	var latentErr float64
	for c := 0; c < n; c++ {
		req := gen.Request{Labels: []int{c % classes}, Settings: settings, Seed: uint64(c)}
		a, err := ref.Generate(context.Background(), req, nil)
		if err != nil {
			return err
		}
		q, err := conv.Generate(context.Background(), req, nil)
		if err != nil {
			return err
		}
		for si := range a.Tokens {
			for i := range a.Tokens[si] {
				total++
				if si < len(q.Tokens) && i < len(q.Tokens[si]) && a.Tokens[si][i] == q.Tokens[si][i] {
					same++
				}
			}
		}
		if a.Latents != nil && q.Latents != nil {
			d := relDiff(a.Latents.Data, q.Latents.Data)
			latentErr = math.Max(latentErr, d)
		}
		p := core.PSNR(a.Images.Data, q.Images.Data)
		minPSNR = math.Min(minPSNR, p)
		sumPSNR += p
	}
	what := "the checkpoints'"
	if source.weightsDir != "" {
		what = "the source directory's"
	}
	if !greedy {
		fmt.Fprintf(stdout, "verify: %d images (seeds 0..%d, the model's default settings) on cpu against %s: latents max error %.3g of their largest value; image PSNR mean %.1f dB, min %.1f dB\n",
			n, n-1, what, latentErr, sumPSNR/float64(n), minPSNR)
		return nil
	}
	fmt.Fprintf(stdout, "verify: %d greedy images (%s) on cpu: %d/%d tokens (%.1f%%) equal to %s; image PSNR mean %.1f dB, min %.1f dB\n",
		n, describeSettings(ref, settings), same, total, 100*float64(same)/float64(total), what, sumPSNR/float64(n), minPSNR)
	return nil
}

func hasSetting(decl []gen.Setting, name string) bool {
	for _, s := range decl {
		if s.Name == name {
			return true
		}
	}
	return false
}

// relDiff is max|a-b| relative to max|a| (1 for a length mismatch).
func relDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return 1
	}
	var d, m float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
		m = math.Max(m, math.Abs(float64(a[i])))
	}
	if m == 0 {
		return d
	}
	return d / m
}

// fitPreviewMap fits the linear preview map of the converted directory dir to n of its own images on the
// CPU (varmodel.Pipeline.FitLinearPreview) and stores it in the directory's manifest meta.
func fitPreviewMap(dir string, heads, n int, stdout, stderr io.Writer) error {
	ctx := context.Background()
	b := cpu.New(0)
	m, err := weights.Load(ctx, weights.DirSource(dir), weights.LoadOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	p, err := convert.LoadPipeline(m, b, varmodel.Options{Heads: heads})
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	d := varmodel.OfficialSampling // generate's defaults
	s := convert.Sampling{CFG: d.CFG, TopK: d.TopK, TopP: d.TopP}
	if d, err := convert.SamplingOf(m.Manifest()); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	} else if d != nil {
		s = *d
	}
	start := time.Now()
	lp, rms, err := p.FitLinearPreview(ctx, b, convert.PreviewFitRequests(p.VAR.Config().Classes, n, 0, s), func(done int) {
		fmt.Fprintf(stderr, "\rpreview map: %d/%d images generated and decoded", done, n)
	})
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	meta, err := convert.LinearPreviewMeta(lp)
	if err != nil {
		return err
	}
	if _, err := weights.UpdateMeta(dir, map[string]string{convert.MetaLinearPreview: meta}); err != nil {
		return err
	}
	pn := p.VAR.Config().PatchNums
	fmt.Fprintf(stdout, "preview map: fitted to %d images x %d scales at %dx%d latent pixels on cpu in %.1f s, RMS residual %.3f (pixel values in [0, 1]); stored as meta %s\n",
		n, len(pn), pn[len(pn)-1], pn[len(pn)-1], time.Since(start).Seconds(), rms, convert.MetaLinearPreview)
	return nil
}

// parseSampling parses "cfg=3,top_k=100,top_p=0.9[,more_smooth=true]" (every key but more_smooth required);
// "" means none.
func parseSampling(s string) (*convert.Sampling, error) {
	if s == "" {
		return nil, nil
	}
	var out convert.Sampling
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("%q: want key=value", kv)
		}
		var err error
		switch k {
		case "cfg":
			out.CFG, err = strconv.ParseFloat(v, 64)
		case "top_k":
			out.TopK, err = strconv.Atoi(v)
		case "top_p":
			out.TopP, err = strconv.ParseFloat(v, 64)
		case "more_smooth":
			out.MoreSmooth, err = strconv.ParseBool(v)
		default:
			return nil, fmt.Errorf("unknown key %q (want cfg, top_k, top_p, more_smooth)", k)
		}
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %v", k, v, err)
		}
		seen[k] = true
	}
	for _, k := range []string{"cfg", "top_k", "top_p"} {
		if !seen[k] {
			return nil, fmt.Errorf("%s is missing (cfg, top_k and top_p go together)", k)
		}
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return &out, nil
}

// convertRelease converts an RQ-Transformer release: its two model.pt state dicts, with the head counts
// and the default sampling of its config.yaml (unless -heads, -set or -sampling say otherwise).
func convertRelease(path string, ema bool, out string, opt convert.ConvertOptions) (*weights.Manifest, error) {
	r, err := rq.OpenRelease(path, rq.ReleaseOptions{EMA: ema})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	key := rq.ReleaseOptions{EMA: ema}.StateDictKey()
	s2, close2, err := openStateDict(r.Stage2Path, key)
	if err != nil {
		return nil, err
	}
	defer close2()
	s1, close1, err := openStateDict(r.Stage1Path, rq.Stage1Key) // --ema is stage 2's only, as officially
	if err != nil {
		return nil, err
	}
	defer close1()
	if opt.Heads == 0 {
		opt.Heads, opt.DecHeads = r.Config.Body.Heads, r.Config.Head.Heads
	}
	if opt.Settings == nil {
		opt.Settings = gen.Settings{}
	}
	d := r.Defaults
	for name, v := range map[string]string{"temperature": fmt.Sprint(d.Temperature), "top-k": fmt.Sprint(d.TopK), "top-p": fmt.Sprint(d.TopP)} {
		if _, given := opt.Settings[name]; !given && v != "0" {
			opt.Settings[name] = v
		}
	}
	return convert.ConvertSources(s2, s1, filepath.Base(filepath.Clean(path)), out, opt)
}

// chunkBytes is the chunk size the -chunk-mib and -chunk-kib flags ask for (KiB when given).
func chunkBytes(mib, kib int) int64 {
	if kib > 0 {
		return int64(kib) << 10
	}
	return int64(mib) << 20
}
