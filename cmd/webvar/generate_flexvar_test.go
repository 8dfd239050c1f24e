package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webvar/webvar/internal/testutil"
)

// The command-line contract of issue 15 on every FlexVAR fixture's generation goldens, on both
// backends: `generate -var FLEXVAR.pth -vae FLEXVAE.pth -patch-nums ... -class N -cfg F -cfg-mode M
// -max-pn P -top-k 1 -seed 0 -tokens t.json -out img.png` writes image 0's tokens per step and its image
// as (x+1)/2 clamped.
func TestGenerateFlexVARFixture(t *testing.T) {
	for _, f := range testutil.Fixtures(t, "flexvar") {
		for _, backend := range []string{"cpu", "webgpu"} {
			t.Run(f.Name+"/"+backend, func(t *testing.T) { testGenerateFlexVAR(t, f, backend) })
		}
	}
}

func testGenerateFlexVAR(t *testing.T, f testutil.Fixture, backend string) {
	g := testutil.OpenGolden(t, f.Path("golden.safetensors"))
	g.Generations(t, f.Name, func(t *testing.T, run string) {
		dir := t.TempDir()
		img, tok := filepath.Join(dir, "img.png"), filepath.Join(dir, "t.json")
		var sched []string
		for _, s := range g.Ints(run + ".schedule") {
			sched = append(sched, fmt.Sprint(s))
		}
		mode := "linear"
		if g.Ints(run + ".used_llamagen_cfg")[0] != 0 {
			mode = "llamagen"
		}
		label := g.Ints(run + ".label_B")[0]
		args := []string{"generate", "-var", f.Path("var.pth"), "-vae", f.Path("vae.pth"),
			"-patch-nums", strings.Join(sched, ","), "-class", fmt.Sprint(label), "-cfg", fmt.Sprint(g.F32(run + ".cfg").Data[0]),
			"-cfg-mode", mode, "-max-pn", fmt.Sprint(g.Ints(run + ".max_pn")[0]), "-top-k", "1", "-seed", "0",
			"-backend", backend, "-tokens", tok, "-out", img}
		// Without l2-norm attention no tensor says the head count: the contract's flags plus -heads.
		if c := testutil.ReadVARConfig(t, f); !c.AttnL2Norm && c.NumHeads > 0 {
			args = append(args, "-heads", fmt.Sprint(c.NumHeads))
		}
		rc, _, stderr := runCLI(t, args...)
		if rc != 0 {
			t.Fatalf("exit %d: %s", rc, stderr)
		}
		tj := struct{ Tokens [][]int }{readTokens(t, tok)}
		if len(tj.Tokens) != len(sched) {
			t.Fatalf("%d steps in tokens.json, want %d", len(tj.Tokens), len(sched))
		}
		for si := range sched {
			want := g.Ints(fmt.Sprintf("%s.idx.s%d", run, si))
			testutil.IntsEqual(t, fmt.Sprintf("tokens.json step %d", si), tj.Tokens[si], want[:len(want)/2])
		}
		pic := readPNG(t, img)
		ref := g.F32(run + ".img") // [B, 3, H, W], not clamped
		h, w := ref.Shape[2], ref.Shape[3]
		if b := pic.Bounds(); b.Dx() != w || b.Dy() != h {
			t.Fatalf("image %v, want %dx%d", b, w, h)
		}
		maxDiff := 0.0
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				r, gg, b, _ := pic.At(x, y).RGBA()
				for c, v := range []uint32{r, gg, b} {
					want := min(max((float64(ref.Data[c*h*w+y*w+x])+1)/2, 0), 1) * 255
					maxDiff = max(maxDiff, abs(float64(v>>8)-want))
				}
			}
		}
		if maxDiff > 0.51 {
			t.Fatalf("PNG differs from %s.img by %.2f levels", run, maxDiff)
		}
	})
}
