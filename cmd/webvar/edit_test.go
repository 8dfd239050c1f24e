package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webvar/webvar/internal/testutil"
)

// The command-line contract of issue 16 on var-tiny's edit goldens (the official notebook), on both
// backends: `webvar edit -var V.pth -vae VAE.pth -image in.png -box y0,x0,y1,x1 [-outpaint] -class N
// -cfg F -top-k 1 -seed 0 -backend B -tokens t.json -out out.png`: tokens exactly, the image within
// 3/255 (and the PNG's 8-bit rounding).
func TestEditFixture(t *testing.T) {
	for _, f := range testutil.Fixtures(t, "var") {
		raw, err := os.ReadFile(f.Path("edit.json"))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Cases []struct {
				Name    string     `json:"name"`
				Label   int        `json:"label"`
				CFG     float64    `json:"cfg"`
				Box     [4]float64 `json:"box_y0_x0_y1_x1"`
				Inpaint bool       `json:"inpainting"`
			} `json:"cases"`
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		g := testutil.OpenGolden(t, f.Path("edit.safetensors"))
		// The PNG is read exactly as the notebook reads it.
		side := g.F32("edit.input").Shape[3]
		img, note, err := readEditImage(f.Path("edit_input.png"), side, side)
		if err != nil || note != "" {
			t.Fatalf("edit_input.png: %v %q", err, note)
		}
		testutil.AbsClose(t, "edit.input", img.Data, g.F32("edit.input").Data, 0)
		for _, backend := range []string{"cpu", "webgpu"} {
			for _, c := range cfg.Cases {
				t.Run(f.Name+"/"+backend+"/"+c.Name, func(t *testing.T) {
					dir := t.TempDir()
					out, tok := filepath.Join(dir, "out.png"), filepath.Join(dir, "t.json")
					args := []string{"edit", "-var", f.Path("var.pth"), "-vae", f.Path("vae.pth"), "-image", f.Path("edit_input.png"),
						"-box", fmt.Sprintf("%g,%g,%g,%g", c.Box[0], c.Box[1], c.Box[2], c.Box[3]), "-class", fmt.Sprint(c.Label),
						"-cfg", fmt.Sprint(c.CFG), "-top-k", "1", "-seed", "0", "-backend", backend, "-tokens", tok, "-out", out}
					if !c.Inpaint {
						args = append(args, "-outpaint")
					}
					rc, _, stderr := runCLI(t, args...)
					if rc != 0 {
						t.Fatalf("exit %d: %s", rc, stderr)
					}
					tj := struct{ Tokens [][]int }{readTokens(t, tok)}
					for si := range tj.Tokens {
						name := fmt.Sprintf("edit.%s.idx.s%d", c.Name, si)
						testutil.IntsEqual(t, name, tj.Tokens[si], g.Ints(name))
					}
					pic := readPNG(t, out)
					ref := g.F32("edit." + c.Name + ".img")
					h, w := ref.Shape[2], ref.Shape[3]
					maxDiff := 0.0
					for y := 0; y < h; y++ {
						for x := 0; x < w; x++ {
							r, gg, b, _ := pic.At(x, y).RGBA()
							for ch, v := range []uint32{r, gg, b} {
								maxDiff = max(maxDiff, abs(float64(v>>8)-float64(ref.Data[ch*h*w+y*w+x])*255))
							}
						}
					}
					if maxDiff > 3.5 { // 3/255 plus the PNG's rounding
						t.Errorf("image differs from edit.%s.img by %.2f levels", c.Name, maxDiff)
					}
				})
			}
		}
	}
}

// A mask PNG (white = regenerate) and bad input: named errors, no image written.
func TestEditMaskAndBadInput(t *testing.T) {
	dir := t.TempDir()
	varp, vaep, in := testutil.VarTiny("var.pth"), testutil.VarTiny("vae.pth"), testutil.VarTiny("edit_input.png")
	// The inpaint_null box (rows/cols 0.1..0.8 of a 4x4 grid: cells 0..2) as a 64x64 mask.
	mask := image.NewGray(image.Rect(0, 0, 64, 64))
	for y := 0; y < 48; y++ {
		for x := 0; x < 48; x++ {
			mask.SetGray(x, y, color.Gray{255})
		}
	}
	mpath := filepath.Join(dir, "mask.png")
	writeTestPNG(t, mpath, mask)
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	common := []string{"-var", varp, "-vae", vaep, "-image", in, "-class", "10", "-cfg", "4", "-top-k", "1", "-out", filepath.Join(dir, "x.png")}
	if rc, _, stderr := runCLI(t, append(append([]string{"edit"}, common...), "-mask", mpath, "-tokens", a)...); rc != 0 {
		t.Fatalf("-mask: exit %d: %s", rc, stderr)
	}
	if rc, _, stderr := runCLI(t, append(append([]string{"edit"}, common...), "-box", "0.1,0.1,0.8,0.8", "-tokens", b)...); rc != 0 {
		t.Fatalf("-box: exit %d: %s", rc, stderr)
	}
	ta, _ := os.ReadFile(a)
	tb, _ := os.ReadFile(b)
	if string(ta) != string(tb) {
		t.Errorf("the mask PNG of the box gave other tokens than -box:\n%s\n%s", ta, tb)
	}
	notPNG := filepath.Join(dir, "not.png")
	os.WriteFile(notPNG, []byte("not a png"), 0o644)
	out := filepath.Join(dir, "never.png")
	for _, c := range []struct {
		args []string
		rc   int
		msg  string
	}{
		{[]string{"-var", varp, "-vae", vaep, "-out", out, "-box", "0,0,1,1"}, 2, "-image is required"},
		{[]string{"-var", varp, "-vae", vaep, "-image", in, "-out", out}, 2, "-box"},
		{[]string{"-var", varp, "-vae", vaep, "-image", in, "-out", out, "-box", "0.5,0,0.2,1"}, 2, "y0 < y1"},
		{[]string{"-var", varp, "-vae", vaep, "-image", in, "-out", out, "-box", "0,0,1"}, 2, "y0,x0,y1,x1"},
		{[]string{"-var", varp, "-vae", vaep, "-image", in, "-out", out, "-box", "0,0,1,1", "-class", "11"}, 2, "null class"},
		{[]string{"-var", varp, "-vae", vaep, "-image", notPNG, "-out", out, "-box", "0,0,1,1"}, 1, "not a readable PNG"},
		{[]string{"-var", varp, "-vae", vaep, "-image", in, "-out", out, "-box", "0,0,1,1", "-outpaint"}, 2, "nothing to regenerate"},
		{[]string{"-var", varp, "-vae", vaep, "-image", in, "-out", out, "-box", "0,0,0.1,0.1", "-outpaint"}, 2, "covers no token"},
		{[]string{"-var", varp, "-vae", vaep, "-image", in, "-out", out, "-box", "0,0,0.1,0.1"}, 2, "covers no token"},
	} {
		rc, _, stderr := runCLI(t, append([]string{"edit"}, c.args...)...)
		if rc != c.rc || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d, %q; want %d mentioning %q", c.args, rc, stderr, c.rc, c.msg)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed edit wrote an image")
	}
}

func writeTestPNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// webvar edit on a FlexVAR model (flexvar-tiny): refinement keeps the first steps' tokens of the input
// (those of -refine with every step kept), expansion to 16:9 writes the wider image around the input, a
// box keeping everything is refused, and -expand is refused for VAR.
func TestEditFlexVAR(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.png")
	ckpt := []string{"-var", testutil.FlexVARTiny("var.pth"), "-vae", testutil.FlexVARTiny("vae.pth"), "-patch-nums", "1,2,3,4"}
	if rc, _, stderr := runCLI(t, append([]string{"generate", "-class", "1", "-seed", "4", "-out", in}, ckpt...)...); rc != 0 {
		t.Fatalf("generate: exit %d: %s", rc, stderr)
	}
	tokens := func(args ...string) [][]int {
		t.Helper()
		tok := filepath.Join(dir, "t.json")
		rc, _, stderr := runCLI(t, append(append([]string{"edit", "-image", in, "-class", "2", "-seed", "9", "-out", filepath.Join(dir, "o.png"), "-tokens", tok}, ckpt...), args...)...)
		if rc != 0 {
			t.Fatalf("edit %v: exit %d: %s", args, rc, stderr)
		}
		var v struct{ Tokens [][]int }
		data, _ := os.ReadFile(tok)
		if err := json.Unmarshal(data, &v); err != nil || len(v.Tokens) != 4 {
			t.Fatalf("tokens %s: %v", data, err)
		}
		return v.Tokens
	}
	all, two := tokens("-refine", "4"), tokens("-refine", "2")
	for si := range 2 {
		if fmt.Sprint(two[si]) != fmt.Sprint(all[si]) {
			t.Errorf("-refine 2, step %d: %v, the input's %v", si, two[si], all[si])
		}
	}
	if fmt.Sprint(two[3]) == fmt.Sprint(all[3]) {
		t.Errorf("-refine 2 regenerated nothing of the last step")
	}
	wide := filepath.Join(dir, "wide.png")
	if rc, _, stderr := runCLI(t, append([]string{"edit", "-image", in, "-expand", "-aspect", "16:9", "-class", "1", "-out", wide}, ckpt...)...); rc != 0 {
		t.Fatalf("expand: exit %d: %s", rc, stderr)
	}
	if b := readPNG(t, wide).Bounds(); b.Dx() != 80 || b.Dy() != 48 { // grids 1x1, 1x2, 2x3, 3x5 of 16-pixel tokens
		t.Errorf("expanded image %v, want 80x48", b)
	}
	if rc, _, stderr := runCLI(t, append([]string{"edit", "-image", in, "-box", "0,0,1,1", "-outpaint", "-out", wide}, ckpt...)...); rc != 2 || !strings.Contains(stderr, "keeps the whole image") {
		t.Errorf("keep-everything box: exit %d: %s", rc, stderr)
	}
	if rc, _, stderr := runCLI(t, "edit", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"), "-image", in, "-expand", "-out", wide); rc != 2 || !strings.Contains(stderr, "FlexVAR") {
		t.Errorf("-expand on VAR: exit %d: %s", rc, stderr)
	}
}
