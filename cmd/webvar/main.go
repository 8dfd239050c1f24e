// Command webvar runs visual autoregressive image generators of several families (VAR, FlexVAR, MAR,
// RQ-Transformer), from
// their official checkpoints or converted weights, on the CPU or through WebGPU.
//
//	webvar generate -class 7 -out image.png                          (the embedded default model)
//	webvar generate -var var.pth -vae vae.pth -class 207 -out image.png
//	webvar generate -var FlexVARd16-epo179.pth -vae FlexVAE.pth -patch-nums 1,2,3,4,5,6,8,10,13,16,23,32 -class 207 -out big.png
//	webvar generate -var mar-base/checkpoint-last.pth -vae kl16.ckpt -iters 64 -diffusion-steps 100 -class 207 -out mar.png
//
// Run `webvar help` for the subcommands and `webvar <subcommand> -h` for their flags.
package main

import (
	"fmt"
	"io"
	"os"
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"generate", "generate an image (or a class x seed grid) and write a PNG; default model: the embedded fashionvar", runGenerate},
		{"edit", "edit an image: VAR and FlexVAR in-/out-painting and class-conditional editing (-box or -mask; FlexVAR -expand), RQ image completion (-keep-rows)", runEdit},
		{"convert", "convert official checkpoints into a chunked, quantized weights directory (with a fitted preview map)", runConvert},
		{"serve", "serve the browser app (WebAssembly; WebGPU, else WebGL2 + CPU) on the embedded model or a converted weights directory", runServe},
		{"preview", "open the interactive window: weights loading, then the image scale by scale (build with -tags preview)", runPreview},
		{"bench", "time whole generations (-model tiny|d16|d20|fashionvar|flexvar-tiny|flexvar-d16|d20|d24|mar-tiny|mar-b|l|h|rq-tiny|rq-480m|rq-1400m, -weights DIR; -previews all compares the preview modes; MAR: -iters, -diffusion-steps) or each engine op (-kernels)", runBench},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "webvar: run visual autoregressive image generators on your own machine and in the browser")
	fmt.Fprintln(w, "\nfamilies (recognised from the checkpoints' keys; the same commands run each):")
	for _, f := range familyHelp {
		fmt.Fprintf(w, "  %-10s %s\n", f[0], f[1])
	}
	fmt.Fprintln(w, "\nusage: webvar <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "  help       show this help")
	fmt.Fprintln(w, "\nRun 'webvar <command> -h' for a command's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status (0 ok, 1 failure, 2 bad usage).
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			if err := c.run(args[1:], stdout, stderr); err != nil {
				if _, ok := err.(usageError); ok {
					fmt.Fprintf(stderr, "webvar %s: %v\n", c.name, err)
					return 2
				}
				fmt.Fprintf(stderr, "webvar %s: %v\n", c.name, err)
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "webvar: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// familyHelp is one line per model family for `webvar help`.
var familyHelp = [][2]string{
	{"VAR", "next-scale prediction (FoundationVision/VAR): var_d16.pth + vae_ch160v4096z32.pth; settings cfg, top-k, top-p, more-smooth"},
	{"FlexVAR", "any steps, size and aspect (jiaosiyu1999/FlexVAR): FlexVARd16-epo179.pth + FlexVAE.pth; adds -patch-nums as the step"},
	{"", "schedule (e.g. 1,2,3,5,8,16 fast; ...,16,23,32 for 512 px), -aspect 16:9, -cfg-mode linear|llamagen, -max-pn"},
	{"MAR", "continuous tokens + a diffusion head (LTH14/mar): checkpoint-last.pth + kl16.ckpt; settings -iters, -diffusion-steps,"},
	{"", "-temperature, -cfg, -cfg-schedule linear|constant; -heads for models whose heads are not width/64"},
	{"RQ-Transformer", "residual codes position by position (kakaobrain/rq-vae-transformer): -rq imagenet_480M.tar.gz (or its directory:"},
	{"", "stage1/ + stage2/ with config.yaml + model.pt); settings -temperature, -top-k, -top-p; edit -keep-rows R completes images"},
}

// usageError marks bad flags or arguments (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
