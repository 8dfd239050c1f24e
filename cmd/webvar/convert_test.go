package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/weights"
)

// Converting var-tiny at f32 and generating from the directory reproduces the official greedy run exactly.
func TestConvertF32RoundTripReproducesGolden(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	rc, out, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "f32", "-chunk-mib", "1", "-out", dir, "-verify", "1")
	if rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	if !strings.Contains(out, "30/30 tokens (100.0%)") {
		t.Fatalf("f32 conversion changed tokens: %s", out)
	}
	tok := filepath.Join(t.TempDir(), "tokens.json")
	rc, _, stderr = runCLI(t, "generate", "-weights", dir, "-class", "1", "-cfg", "1.5", "-top-k", "1", "-top-p", "0",
		"-out", filepath.Join(t.TempDir(), "x.png"), "-tokens", tok)
	if rc != 0 {
		t.Fatalf("generate -weights: exit %d: %s", rc, stderr)
	}
	tj := struct{ Tokens [][]int }{readTokens(t, tok)}
	g := testutil.OpenGolden(t, testutil.VarTiny("golden.safetensors"))
	for si, pn := range []int{1, 2, 3, 4} {
		testutil.IntsEqual(t, fmt.Sprintf("scale %d", si), tj.Tokens[si], g.Ints(fmt.Sprintf("ar1.idx.s%d", si))[:pn*pn])
	}
}

// Quantized conversions report per-tensor error and, with -verify, token agreement and PSNR.
func TestConvertQuantizedReportsError(t *testing.T) {
	for _, q := range []string{"int8", "int4", "f16"} {
		t.Run(q, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "w")
			rc, out, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
				"-quant", q, "-out", dir, "-verify", "2", "-preview-fit", "0")
			if rc != 0 {
				t.Fatalf("exit %d: %s", rc, stderr)
			}
			if !strings.Contains(stderr, "var.blocks.0.ffn.fc1.weight") || !strings.Contains(stderr, "rel RMS") {
				t.Fatalf("no per-tensor error report:\n%s", stderr)
			}
			if !strings.Contains(out, "verify: 2 greedy images") || !strings.Contains(out, "PSNR") {
				t.Fatalf("no verification report: %s", out)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
}

func TestConvertAndWeightsBadInput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	if rc, _, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "int8", "-out", dir, "-verify", "0", "-preview-fit", "0"); rc != 0 {
		t.Fatalf("convert: %s", stderr)
	}
	// Corrupt one byte of a chunk: loading must name the chunk and fail the integrity check.
	chunk := filepath.Join(dir, "chunk-00000.bin")
	data, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(chunk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rc, _, stderr := runCLI(t, "generate", "-weights", dir, "-out", filepath.Join(t.TempDir(), "x.png"))
	if rc != 1 || !strings.Contains(stderr, "chunk-00000.bin") {
		t.Fatalf("corrupted chunk: exit %d, %q", rc, stderr)
	}
	cases := []struct {
		args []string
		rc   int
		msg  string
	}{
		{[]string{"convert", "-var", testutil.VarTiny("var.pth")}, 2, "-var and -vae are required"},
		{[]string{"convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth")}, 2, "-out is required"},
		{[]string{"convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"), "-out", t.TempDir() + "/q", "-quant", "int3"}, 1, "int3"},
		{[]string{"convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"), "-out", t.TempDir() + "/q", "-vae-quant", "int3"}, 1, "int3"},
		{[]string{"convert", "-from", dir, "-var", testutil.VarTiny("var.pth"), "-out", t.TempDir() + "/q"}, 2, "either -from"},
		{[]string{"convert", "-from", dir, "-out", dir + "/"}, 2, "-out must differ"},
		{[]string{"convert", "-from", filepath.Join(t.TempDir(), "missing"), "-out", t.TempDir() + "/q"}, 1, "missing"},
		{[]string{"generate", "-weights", dir, "-var", testutil.VarTiny("var.pth"), "-out", "x.png"}, 2, "not both"},
		{[]string{"generate", "-weights", filepath.Join(t.TempDir(), "missing"), "-out", "x.png"}, 1, "missing"},
		{[]string{"convert", "-preview-fit", "-1", "-out", "x"}, 2, "-preview-fit"},
		{[]string{"convert", "-weights", dir, "-out", "x"}, 2, "without -var, -vae and -out"},
		{[]string{"convert", "-weights", dir, "-preview-fit", "0"}, 2, "-preview-fit N >= 1"},
		{[]string{"generate", "-weights", dir, "-scales-preview", "blurry", "-out", "x.png"}, 2, "linear"},
	}
	for _, c := range cases {
		rc, _, stderr := runCLI(t, c.args...)
		if rc != c.rc || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d (want %d), %q (want %q)", c.args, rc, c.rc, stderr, c.msg)
		}
	}
}

// Without the encoder the directory is smaller and still generates the same greedy image.
func TestConvertNoEncoder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	rc, out, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "f32", "-no-encoder", "-out", dir, "-verify", "1", "-preview-fit", "0")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	if strings.Contains(stderr, "vae.encoder.") || strings.Contains(stderr, "vae.quant_conv.") {
		t.Fatal("encoder tensors were written")
	}
	if !strings.Contains(out, "30/30 tokens (100.0%)") {
		t.Fatalf("decoder-only conversion changed the image: %s", out)
	}
}

// convert fits the linear preview map into the metadata; -weights DIR refits it in place without touching
// the chunks; generate then writes linear previews with it, and says when a model has no map.
func TestConvertPreviewFit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	rc, out, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "int8", "-out", dir, "-verify", "0", "-preview-fit", "0")
	if rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	if strings.Contains(out, "preview map") {
		t.Fatalf("-preview-fit 0 fitted a map: %s", out)
	}
	scales := t.TempDir()
	rc, _, stderr = runCLI(t, "generate", "-weights", dir, "-scales", scales, "-scales-preview", "linear", "-out", filepath.Join(t.TempDir(), "x.png"))
	if rc != 0 || !strings.Contains(stderr, "no linear preview map") {
		t.Fatalf("generate -scales-preview linear without a map: exit %d, %q; want a note that previews are fast", rc, stderr)
	}
	chunk := func() []byte {
		data, err := os.ReadFile(filepath.Join(dir, "chunk-00000.bin"))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	before := chunk()
	rc, out, stderr = runCLI(t, "convert", "-weights", dir, "-preview-fit", "2")
	if rc != 0 || !strings.Contains(out, "preview map: fitted to 2 images x 4 scales") || !strings.Contains(out, "preview.linear_rgb") {
		t.Fatalf("refit: exit %d, %q, %s", rc, out, stderr)
	}
	if string(chunk()) != string(before) {
		t.Fatal("refitting the preview map changed a chunk")
	}
	rc, _, stderr = runCLI(t, "generate", "-weights", dir, "-scales", scales, "-scales-preview", "linear", "-out", filepath.Join(t.TempDir(), "x.png"))
	if rc != 0 || strings.Contains(stderr, "no linear preview map") {
		t.Fatalf("generate -scales-preview linear with a map: exit %d, %q", rc, stderr)
	}
	entries, err := os.ReadDir(scales)
	if err != nil || len(entries) != 4 {
		t.Fatalf("%d scale previews (%v), want 4", len(entries), err)
	}
}

// -from converts a converted directory again: storing the decoder int4 changes no token (the decoder
// does not feed the transformer), shrinks the VQVAE part and is reported per tensor.
func TestConvertFromDirectory(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if rc, _, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "int8", "-vae-quant", "f16", "-no-encoder", "-out", src, "-verify", "0", "-preview-fit", "0"); rc != 0 {
		t.Fatalf("convert: %s", stderr)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	rc, out, stderr := runCLI(t, "convert", "-from", src, "-quant", "int8", "-vae-quant", "int4", "-out", dst, "-verify", "1", "-preview-fit", "0")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	if !regexp.MustCompile(`vae\.decoder\.conv_in\.weight +int4 +\[128, 8, 3, 3\] .*rel RMS`).MatchString(stderr) {
		t.Errorf("no int4 report for the decoder's conv_in:\n%s", stderr)
	}
	if strings.Contains(stderr, "vae.encoder.") {
		t.Error("the source had no encoder, yet encoder tensors were written")
	}
	if !strings.Contains(out, "30/30 tokens (100.0%) equal to the source directory's") {
		t.Errorf("verify output: %s", out)
	}
	size := func(dir string) (vae int64) {
		man, err := weights.LoadManifest(context.Background(), weights.DirSource(dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, te := range man.Tensors {
			if strings.HasPrefix(te.Name, "vae.") {
				vae += te.Length
			}
		}
		return vae
	}
	if a, b := size(src), size(dst); b >= a*2/3 {
		t.Errorf("VQVAE bytes %d with an int4 decoder, %d with f16: want well under", b, a)
	}
}

// A MAR checkpoint whose encoder and decoder have different head counts (testdata/variants/mar-p2: 3
// and 2, neither width/64) needs -heads and -dec-heads; converted with them, the directory records both
// and generates the same image as the checkpoints with the same seed.
func TestConvertMARDecoderHeads(t *testing.T) {
	dir := filepath.Join(testutil.VariantsDir(), "mar-p2")
	mp, vp := filepath.Join(dir, "mar.pth"), filepath.Join(dir, "vae.pth")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "w")
	if rc, _, stderr := runCLI(t, "convert", "-var", mp, "-vae", vp, "-heads", "3", "-out", out); rc == 0 || !strings.Contains(stderr, "decoder") {
		t.Errorf("converted with the decoder's heads unknown: exit %d: %s", rc, stderr)
	}
	if rc, _, stderr := runCLI(t, "convert", "-var", mp, "-vae", vp, "-heads", "3", "-dec-heads", "2", "-quant", "f32", "-out", out); rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	gen := func(name string, model ...string) []byte {
		path := filepath.Join(tmp, name)
		args := append([]string{"generate"}, model...)
		args = append(args, "-class", "1", "-seed", "3", "-iters", "4", "-diffusion-steps", "5", "-out", path)
		if rc, _, stderr := runCLI(t, args...); rc != 0 {
			t.Fatalf("generate %v: exit %d: %s", model, rc, stderr)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if !bytes.Equal(gen("conv.png", "-weights", out), gen("ckpt.png", "-var", mp, "-vae", vp, "-heads", "3", "-dec-heads", "2")) {
		t.Error("the converted directory's image differs from the checkpoints'")
	}
}
