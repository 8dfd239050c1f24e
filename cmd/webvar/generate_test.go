package main

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webvar/webvar/internal/testutil"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := run(args, &out, &errb)
	return rc, out.String(), errb.String()
}

// The VAR command-line contract: `webvar generate -var VAR.pth -vae VAE.pth -class N -cfg F -top-k 1
// -seed 0 -tokens t.json -out img.png` on each VAR fixture (var-tiny, the bundled variants, every
// WEBVAR_FIXTURES directory) gives every golden greedy run's tokens for its first image exactly and its
// image within 8-bit rounding, on both backends, with a preview per scale under -scales. patch_nums and,
// for plain attention, the head count come from the fixture's config.json when it has them.
func TestGenerateVARFixture(t *testing.T) {
	for _, f := range testutil.Fixtures(t, "var") {
		for _, backend := range []string{"cpu", "webgpu"} {
			t.Run(f.Name+"/"+backend, func(t *testing.T) { testGenerateVAR(t, f, backend) })
		}
	}
}

func testGenerateVAR(t *testing.T, f testutil.Fixture, backend string) {
	g := testutil.OpenGolden(t, f.Path("golden.safetensors"))
	c := testutil.ReadVARConfig(t, f)
	g.Generations(t, f.Name, func(t *testing.T, run string) {
		dir := t.TempDir()
		img, tok, scales := filepath.Join(dir, "img.png"), filepath.Join(dir, "tokens.json"), filepath.Join(dir, "scales")
		args := []string{"generate", "-var", f.Path("var.pth"), "-vae", f.Path("vae.pth"),
			"-class", fmt.Sprint(g.Ints(run + ".label_B")[0]), "-cfg", fmt.Sprint(g.F32(run + ".cfg").Data[0]),
			"-top-k", "1", "-top-p", "0", "-seed", "0", "-out", img, "-tokens", tok, "-scales", scales, "-backend", backend}
		if len(c.PatchNums) > 0 {
			var pn []string
			for _, p := range c.PatchNums {
				pn = append(pn, fmt.Sprint(p))
			}
			args = append(args, "-patch-nums", strings.Join(pn, ","))
		}
		if !c.AttnL2Norm && c.NumHeads > 0 {
			args = append(args, "-heads", fmt.Sprint(c.NumHeads))
		}
		rc, _, stderr := runCLI(t, args...)
		if rc != 0 {
			t.Fatalf("exit %d: %s", rc, stderr)
		}
		tj := struct{ Tokens [][]int }{readTokens(t, tok)}
		var sides []int
		for si := 0; g.Has(fmt.Sprintf("%s.idx.s%d", run, si)); si++ {
			want := g.Ints(fmt.Sprintf("%s.idx.s%d", run, si))
			want = want[:len(want)/len(g.Ints(run+".label_B"))] // image 0
			if si < len(tj.Tokens) {
				testutil.IntsEqual(t, fmt.Sprintf("tokens.json scale %d", si), tj.Tokens[si], want)
			}
			sides = append(sides, int(math.Round(math.Sqrt(float64(len(want))))))
		}
		if len(tj.Tokens) != len(sides) {
			t.Fatalf("%d scales in tokens.json, want %d", len(tj.Tokens), len(sides))
		}

		pic := readPNG(t, img)
		ref := g.F32(run + ".img") // [B, 3, H, W] in [0, 1]
		h, w := ref.Shape[2], ref.Shape[3]
		if b := pic.Bounds(); b.Dx() != w || b.Dy() != h {
			t.Fatalf("image %v, want %dx%d", b, w, h)
		}
		maxDiff := 0.0
		for y := range h {
			for x := range w {
				r, gg, b, _ := pic.At(x, y).RGBA()
				for c, v := range []uint32{r, gg, b} {
					want := float64(ref.Data[(c*h+y)*w+x]) * 255
					maxDiff = max(maxDiff, abs(float64(v>>8)-want))
				}
			}
		}
		if maxDiff > 0.51 { // rounding to 8 bits, plus the 1e-4 tolerance of the float image
			t.Fatalf("PNG differs from %s.img by %.2f levels", run, maxDiff)
		}
		for si, p := range sides {
			name := fmt.Sprintf("scale_%02d_%dx%d.png", si, p, p)
			if _, err := os.Stat(filepath.Join(scales, name)); err != nil {
				t.Errorf("preview missing: %v", err)
			}
		}
	})
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestGenerateBadInput(t *testing.T) {
	dir := t.TempDir()
	varp, vaep := testutil.VarTiny("var.pth"), testutil.VarTiny("vae.pth")
	truncated := filepath.Join(dir, "truncated.pth")
	data, err := os.ReadFile(varp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x.png")
	cases := []struct {
		name string
		args []string
		rc   int
		msg  string
	}{
		{"no var", []string{"-vae", vaep, "-out", out}, 2, "-var is required"},
		{"no out", []string{"-var", varp, "-vae", vaep}, 2, "-out is required"},
		{"bad flag", []string{"-nope"}, 2, "flag provided but not defined"},
		{"bad patch nums", []string{"-var", varp, "-vae", vaep, "-out", out, "-patch-nums", "1,x"}, 2, "-patch-nums"},
		{"wrong patch nums", []string{"-var", varp, "-vae", vaep, "-out", out, "-patch-nums", "1,2,3,5"}, 1, "pos_1LC has L = 30"},
		{"class out of range", []string{"-var", varp, "-vae", vaep, "-out", out, "-class", "10"}, 2, "classes 0..9"},
		{"bad top-p", []string{"-var", varp, "-vae", vaep, "-out", out, "-top-p", "2"}, 2, "-top-p"},
		{"bad backend", []string{"-var", varp, "-vae", vaep, "-out", out, "-backend", "tpu"}, 2, "want cpu, cpu-ref or webgpu"},
		{"missing file", []string{"-var", filepath.Join(dir, "nope.pth"), "-vae", vaep, "-out", out}, 1, "nope.pth"},
		{"truncated checkpoint", []string{"-var", truncated, "-vae", vaep, "-out", out}, 1, "truncated.pth"},
		{"swapped checkpoints", []string{"-var", vaep, "-vae", varp, "-out", out}, 1, "not a checkpoint of a known family"},
		{"flexvar flag on var", []string{"-var", varp, "-vae", vaep, "-out", out, "-cfg-mode", "llamagen"}, 2, "does not take it"},
		{"bad cfg mode", []string{"-var", varp, "-vae", vaep, "-out", out, "-cfg-mode", "quadratic"}, 2, "-cfg-mode"},
		{"bad aspect", []string{"-var", varp, "-vae", vaep, "-out", out, "-aspect", "wide"}, 2, "-aspect"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc, _, stderr := runCLI(t, append([]string{"generate"}, c.args...)...)
			if rc != c.rc || !strings.Contains(stderr, c.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want it to mention %q)", rc, c.rc, stderr, c.msg)
			}
		})
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed run wrote an image")
	}
}

func TestHelpAndUnknownCommand(t *testing.T) {
	if rc, out, _ := runCLI(t, "help"); rc != 0 || !strings.Contains(out, "generate") {
		t.Fatalf("help: %d %q", rc, out)
	}
	if rc, _, stderr := runCLI(t, "frobnicate"); rc != 2 || !strings.Contains(stderr, "unknown command") {
		t.Fatalf("unknown command: %d %q", rc, stderr)
	}
}

// With no model named, generate runs the embedded default model with its own sampling settings; a grid
// cell is the very image that -class/-seed gives alone.
func TestGenerateDefaultModelAndGrid(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.png")
	rc, _, stderr := runCLI(t, "generate", "-class", "7", "-seed", "3", "-out", one)
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	if !strings.Contains(stderr, "embedded default model fashionvar") || !strings.Contains(stderr, "sampling: cfg 3, top-k 100, top-p 0.9") {
		t.Fatalf("stderr does not name the default model and its sampling settings: %s", stderr)
	}
	grid, samples := filepath.Join(dir, "grid.png"), filepath.Join(dir, "samples")
	rc, _, stderr = runCLI(t, "generate", "-classes", "6-7", "-seeds", "2,3", "-samples", samples, "-out", grid)
	if rc != 0 {
		t.Fatalf("grid: exit %d: %s", rc, stderr)
	}
	g := readPNG(t, grid)
	// 2 rows x 2 columns of 32x32 images shown at 2x (64 px) with 2-pixel gaps.
	if b := g.Bounds(); b.Dx() != 2*66+2 || b.Dy() != 2*66+2 {
		t.Fatalf("grid is %v, want 134x134", b)
	}
	a, b := readPNG(t, one), readPNG(t, filepath.Join(samples, "class7_seed3.png"))
	if a.Bounds() != b.Bounds() || a.Bounds().Dx() != 32 {
		t.Fatalf("sizes %v and %v", a.Bounds(), b.Bounds())
	}
	for y := 0; y < 32; y++ {
		for x := 0; x < 32; x++ {
			if a.At(x, y) != b.At(x, y) {
				t.Fatalf("grid cell class 7 seed 3 differs from -class 7 -seed 3 at (%d,%d)", x, y)
			}
			// The cell sits in row 1 (class 7), column 1 (seed 3) of the grid, at 2x.
			if g.At(2+66+2*x, 2+66+2*y) != color.RGBAModel.Convert(a.At(x, y)) {
				t.Fatalf("grid pixel for (%d,%d) differs from the sample", x, y)
			}
		}
	}
	for _, c := range []struct{ args []string }{
		{[]string{"-classes", "9-12", "-out", grid}},
		{[]string{"-seeds", "3-1", "-out", grid}},
		{[]string{"-classes", "all", "-tokens", "t.json", "-out", grid}},
		{[]string{"-samples", samples, "-out", grid}},
		{[]string{"-scales-preview", "none", "-out", grid}},
	} {
		if rc, _, stderr := runCLI(t, append([]string{"generate"}, c.args...)...); rc != 2 {
			t.Errorf("%v: exit %d, want 2: %s", c.args, rc, stderr)
		}
	}
}
