package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webvar/webvar/internal/testutil"
)

// The RQ-Transformer command-line contract: `webvar generate -rq DIR -class N -top-k 1 -seed 0 -backend
// cpu|webgpu -tokens codes.json -out img.png` on each RQ fixture's release layout (rq-tiny, the bundled
// variants, every WEBVAR_FIXTURES directory) gives the official greedy codes ({"codes": H x W x D}) and
// the official image (clamp(x*0.5+0.5, 0, 1)), for each image of the golden run, on both backends.
func TestGenerateRQFixture(t *testing.T) {
	for _, f := range testutil.Fixtures(t, "rq") {
		t.Run(f.Name, func(t *testing.T) { testGenerateRQ(t, f) })
	}
}

func testGenerateRQ(t *testing.T, f testutil.Fixture) {
	dir := f.Dir
	g := testutil.OpenGolden(t, f.Path("golden.safetensors"))
	cond, codes, img := g.Ints("ar.cond"), g.Ints("ar.codes"), g.F32("ar.img01")
	per := len(codes) / len(cond)
	side := img.Shape[3]
	for _, backend := range []string{"cpu", "webgpu"} {
		for i, class := range cond {
			t.Run(fmt.Sprintf("%s/image%d", backend, i), func(t *testing.T) {
				tmp := t.TempDir()
				out, tok := filepath.Join(tmp, "img.png"), filepath.Join(tmp, "codes.json")
				rc, _, stderr := runCLI(t, "generate", "-rq", dir, "-class", fmt.Sprint(class), "-top-k", "1", "-seed", "0",
					"-backend", backend, "-tokens", tok, "-out", out)
				if rc != 0 {
					t.Fatalf("exit %d: %s", rc, stderr)
				}
				var v struct{ Codes [][][]int }
				data, err := os.ReadFile(tok)
				if err != nil || json.Unmarshal(data, &v) != nil {
					t.Fatalf("codes.json: %v %s", err, data)
				}
				var flat []int
				for _, row := range v.Codes {
					for _, col := range row {
						flat = append(flat, col...)
					}
				}
				testutil.IntsEqual(t, "ar.codes", flat, codes[i*per:(i+1)*per])
				png := readPNG(t, out)
				for y := range side {
					for x := range side {
						r, gg, b, _ := png.At(x, y).RGBA()
						for c, v := range []uint32{r, gg, b} {
							want := img.Data[((i*3+c)*side+y)*side+x]
							if got := float64(v>>8) / 255; math.Abs(got-float64(want)) > 0.6/255+1e-4 {
								t.Fatalf("pixel (%d,%d) channel %d = %v, want %v", x, y, c, got, want)
							}
						}
					}
				}
			})
		}
	}
}

// webvar edit -rq DIR -image in.png -keep-rows R: image completion keeps the input's codes of the first R
// rows (the same codes for any R' >= R kept rows) and generates the rest; other edits are refused for RQ
// and -keep-rows for other families.
func TestEditRQCompletion(t *testing.T) {
	dir := filepath.Join(testutil.Root(), "testdata", "rq-tiny")
	tmp := t.TempDir()
	in := filepath.Join(tmp, "in.png")
	if rc, _, stderr := runCLI(t, "generate", "-rq", dir, "-class", "5", "-seed", "2", "-out", in); rc != 0 {
		t.Fatalf("generate: exit %d: %s", rc, stderr)
	}
	codes := func(rows int) [][][]int {
		t.Helper()
		tok := filepath.Join(tmp, "c.json")
		rc, _, stderr := runCLI(t, "edit", "-rq", dir, "-image", in, "-keep-rows", fmt.Sprint(rows), "-class", "1", "-seed", "3",
			"-out", filepath.Join(tmp, "o.png"), "-tokens", tok)
		if rc != 0 {
			t.Fatalf("edit -keep-rows %d: exit %d: %s", rows, rc, stderr)
		}
		var v struct{ Codes [][][]int }
		data, _ := os.ReadFile(tok)
		if err := json.Unmarshal(data, &v); err != nil || len(v.Codes) != 4 {
			t.Fatalf("codes %s: %v", data, err)
		}
		return v.Codes
	}
	one, three := codes(1), codes(3)
	if fmt.Sprint(one[0]) != fmt.Sprint(three[0]) {
		t.Errorf("row 0: %v with 1 kept row, %v with 3", one[0], three[0])
	}
	if rc, _, stderr := runCLI(t, "edit", "-rq", dir, "-image", in, "-box", "0,0,0.5,0.5", "-out", filepath.Join(tmp, "x.png")); rc != 2 || !strings.Contains(stderr, "-keep-rows") {
		t.Errorf("-box on RQ: exit %d: %s", rc, stderr)
	}
	if rc, _, stderr := runCLI(t, "edit", "-rq", dir, "-image", in, "-keep-rows", "4", "-out", filepath.Join(tmp, "x.png")); rc != 2 || !strings.Contains(stderr, "whole image") {
		t.Errorf("-keep-rows 4 of 4: exit %d: %s", rc, stderr)
	}
	if rc, _, stderr := runCLI(t, "edit", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"), "-image", in, "-keep-rows", "1", "-out", filepath.Join(tmp, "x.png")); rc != 2 || !strings.Contains(stderr, "RQ") {
		t.Errorf("-keep-rows on VAR: exit %d: %s", rc, stderr)
	}
}
