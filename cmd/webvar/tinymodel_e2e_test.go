package main

import (
	"bytes"
	"image"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/webvar/webvar/core/vqvae"
	"github.com/webvar/webvar/internal/randmodel"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/weights"
)

// tinyVAR converts a very small random VAR (depth 1, width 64, three scales, a 32-channel VQVAE) into a
// weights directory in chunks of chunkBytes, and returns it with the image `webvar generate` draws on the
// CPU backend for class 1, cfg 1.5, greedy, seed 0 (the fault and soak tests' request). The browser
// tests that generate many times, or on SwiftShader's slow WebGPU, use it: what they test (the app
// around the model) does not depend on the model's size.
func tinyVAR(t *testing.T, chunkBytes int64) (dir string, want *image.NRGBA) {
	t.Helper()
	s := randmodel.VARSpec{Depth: 1, C: 64, Heads: 1, Classes: 10, V: 32, Cvae: 8, PatchNums: []int{1, 2, 3}, L2NormAttn: true}
	varSrc, err := randmodel.NewSource(randmodel.VARTensors(s), randmodel.SeedVAR)
	if err != nil {
		t.Fatal(err)
	}
	vaeSrc, err := randmodel.NewSource(randmodel.VAETensors(randmodel.VAESpec{Ch: 32, Mult: []int{1, 2}, NumRes: 1, V: s.V,
		Cvae: s.Cvae, Scales: len(s.PatchNums), Phi: vqvae.PhiShared}), randmodel.SeedVAE)
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(t.TempDir(), "tiny")
	if _, err := convert.ConvertSources(varSrc, vaeSrc, "tiny random VAR", dir, convert.ConvertOptions{
		PatchNums: s.PatchNums, Quant: weights.F32, ChunkBytes: chunkBytes}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "want.png")
	if rc, _, stderr := runCLI(t, "generate", "-weights", dir, "-backend", "cpu", "-class", "1", "-cfg", "1.5", "-top-k", "1",
		"-top-p", "0", "-seed", "0", "-out", out); rc != 0 {
		t.Fatalf("generate: exit %d: %s", rc, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want = image.NewNRGBA(img.Bounds())
	draw.Draw(want, want.Rect, img, img.Bounds().Min, draw.Src)
	return dir, want
}
