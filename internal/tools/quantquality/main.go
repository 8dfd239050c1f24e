// Command quantquality measures what the storage options of `webvar convert` cost in image quality: it
// converts a model with every combination of -quant int8|int4 and -vae-quant f16|int8|int4 into
// temporary directories, generates the same images (every class x -seeds, the model's default sampling
// or greedy) from the source and from each converted directory on the CPU, and prints, per
// combination, the stored bytes, how many tokens equal the source's, the PSNR of the final images
// against the source's, and the PSNR of the decoder alone (the source's tokens decoded by the converted
// directory's decoder, so sampling differences do not count).
//
//	go run ./internal/tools/quantquality -var testdata/var-tiny/var.pth -vae testdata/var-tiny/vae.pth
//	go run ./internal/tools/quantquality -weights weights/fashionvar   # against the shipped directory
//
// With -weights the source is already converted (fashionvar's Linear weights are int8, its other
// tensors f16/f32 as stored): the reference is what ships, not the training checkpoint, and the int4
// transformer is quantized from the int8 values.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/loader"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
)

func main() {
	varPath := flag.String("var", "", "VAR checkpoint (.pth or .safetensors)")
	vaePath := flag.String("vae", "", "VQVAE checkpoint, with -var")
	weightsDir := flag.String("weights", "", "a converted weights directory instead of -var/-vae (reconverted with convert.Reconvert)")
	seeds := flag.Int("seeds", 10, "seeds 0..N-1, each generating one image of every class")
	greedy := flag.Bool("greedy", false, "greedy decoding (top-k 1, cfg 4, as webvar convert -verify) instead of the model's default sampling")
	flag.Parse()
	if err := run(*varPath, *vaePath, *weightsDir, *seeds, *greedy); err != nil {
		fmt.Fprintln(os.Stderr, "quantquality:", err)
		os.Exit(1)
	}
}

func run(varPath, vaePath, weightsDir string, seeds int, greedy bool) error {
	if (weightsDir == "") == (varPath == "" || vaePath == "") || seeds < 1 {
		return fmt.Errorf("give -weights DIR or -var and -vae, and -seeds >= 1")
	}
	ctx := context.Background()
	b := cpu.New(0)
	tmp, err := os.MkdirTemp("", "quantquality")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The source pipeline, and a function converting the source with given options.
	var ref *varmodel.Pipeline
	var conv func(dir string, opt convert.ConvertOptions) error
	req := varmodel.Request{CFG: 4, TopK: 900, TopP: 0.95} // webvar generate's defaults
	if weightsDir != "" {
		m, err := weights.Load(ctx, weights.DirSource(weightsDir), weights.LoadOptions{})
		if err != nil {
			return err
		}
		if ref, err = convert.LoadPipeline(m, b, varmodel.Options{}); err != nil {
			return err
		}
		if s, err := convert.SamplingOf(m.Manifest()); err != nil {
			return err
		} else if s != nil {
			req = varmodel.Request{CFG: s.CFG, TopK: s.TopK, TopP: s.TopP, MoreSmooth: s.MoreSmooth}
		}
		conv = func(dir string, opt convert.ConvertOptions) error {
			_, err := convert.Reconvert(m, dir, opt)
			return err
		}
	} else {
		vc, err := loader.Open(varPath)
		if err != nil {
			return err
		}
		defer vc.Close()
		ac, err := loader.Open(vaePath)
		if err != nil {
			return err
		}
		defer ac.Close()
		if ref, err = varmodel.LoadPipeline(vc.WeightSource(), ac.WeightSource(), b, varmodel.Options{}); err != nil {
			return err
		}
		conv = func(dir string, opt convert.ConvertOptions) error {
			_, err := convert.Convert(varPath, vaePath, dir, opt)
			return err
		}
	}
	if greedy {
		req = varmodel.Request{CFG: 4, TopK: 1}
	}
	classes := ref.VAR.Config().Classes
	req.Labels = make([]int, classes)
	for c := range req.Labels {
		req.Labels[c] = c
	}
	refs := make([]*varmodel.Result, seeds)
	for s := range refs {
		r := req
		r.Seed = uint64(s)
		if refs[s], err = ref.Generate(ctx, b, r, nil); err != nil {
			return err
		}
	}

	src := "checkpoints " + varPath + " + " + vaePath
	if weightsDir != "" {
		src = "the directory " + weightsDir + " as stored"
	}
	fmt.Printf("reference: %s; %d images (%d classes x seeds 0-%d), cfg %g, top-k %d, top-p %g; CPU\n",
		src, seeds*classes, classes, seeds-1, req.CFG, req.TopK, req.TopP)
	fmt.Printf("%-6s %-9s %9s %9s %14s %14s %14s\n", "quant", "vae-quant", "MB", "VQVAE MB", "tokens equal",
		"image PSNR", "decoder PSNR")
	fmt.Printf("%-6s %-9s %9s %9s %14s %14s %14s\n", "", "", "", "", "", "mean / min dB", "mean / min dB")
	for _, q := range []weights.Scheme{weights.Int8, weights.Int4} {
		for _, vq := range []weights.Scheme{weights.F16, weights.Int8, weights.Int4} {
			dir := filepath.Join(tmp, string(q)+"-"+string(vq))
			if err := conv(dir, convert.ConvertOptions{Quant: q, VAEQuant: vq, NoEncoder: true}); err != nil {
				return err
			}
			m, err := weights.Load(ctx, weights.DirSource(dir), weights.LoadOptions{})
			if err != nil {
				return err
			}
			var total, vae int64
			for _, t := range m.Manifest().Tensors {
				total += t.Length
				if len(t.Name) > 4 && t.Name[:4] == "vae." {
					vae += t.Length
				}
			}
			p, err := convert.LoadPipeline(m, b, varmodel.Options{})
			if err != nil {
				return err
			}
			var img, dec stats
			same, all := 0, 0
			for s, want := range refs {
				r := req
				r.Seed = uint64(s)
				got, err := p.Generate(ctx, b, r, nil)
				if err != nil {
					return err
				}
				for si := range want.Tokens {
					for i, id := range want.Tokens[si] {
						all++
						if got.Tokens[si][i] == id {
							same++
						}
					}
				}
				img.addBatch(want.Images, got.Images)
				// Every scale's tokens fixed to the source's: only the decoder (and f_hat's Phi) differ.
				r.Prefix = want.Tokens
				forced, err := p.Generate(ctx, b, r, nil)
				if err != nil {
					return err
				}
				dec.addBatch(want.Images, forced.Images)
			}
			fmt.Printf("%-6s %-9s %9.2f %9.2f %13.1f%% %14s %14s\n", q, vq, float64(total)/1e6, float64(vae)/1e6,
				100*float64(same)/float64(all), img, dec)
		}
	}
	return nil
}

// stats accumulates per-image PSNR (pixels in [0, 1]).
type stats struct {
	sum, min float64
	n        int
}

func (s *stats) addBatch(want, got core.HostTensor) {
	per := len(want.Data) / want.Shape[0]
	for i := 0; i < want.Shape[0]; i++ {
		p := core.PSNR(want.Data[i*per:(i+1)*per], got.Data[i*per:(i+1)*per])
		if s.n == 0 || p < s.min {
			s.min = p
		}
		s.sum += math.Min(p, 99) // identical images count as 99 dB in the mean
		s.n++
	}
}

func (s stats) String() string {
	return fmt.Sprintf("%.1f / %.1f", s.sum/float64(s.n), s.min)
}
