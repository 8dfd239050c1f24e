package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/core/rq/rqtest"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/ui/uistate"
)

func TestPreviewFlags(t *testing.T) {
	w := []string{"-weights", "w"}
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"both", append([]string{"-var", "a.pth", "-vae", "b.pth"}, w...), "not both"},
		{"var without vae", []string{"-var", "a.pth"}, "-vae is required"},
		{"bad patch nums", append([]string{"-patch-nums", "1,x"}, w...), "-patch-nums"},
		{"bad backend", append([]string{"-backend", "tpu"}, w...), "want auto, webgpu or cpu"},
		{"screenshot alone", append([]string{"-screenshot", "s.png"}, w...), "needs -autostart"},
		{"top-p", append([]string{"-top-p", "2"}, w...), "-top-p"},
		{"depth alone", append([]string{"-depth", "1"}, w...), "goes with -screenshot"},
		{"extra", append(w, "x"), "unexpected"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc, _, stderr := runCLI(t, append([]string{"preview"}, c.args...)...)
			if rc != 2 || !strings.Contains(stderr, c.wantErr) {
				t.Fatalf("exit %d, stderr %q: want exit 2 mentioning %q", rc, stderr, c.wantErr)
			}
		})
	}
	f, err := parsePreview([]string{"-var", "a.pth", "-vae", "b.pth", "-class", "3", "-top-k", "1", "-autostart",
		"-screenshot", "s.png"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.backend != "auto" || f.class != 3 || f.sampling.topK != 1 || f.sampling.cfg != 4 || f.sampling.topP != 0.95 || !f.sampling.set["top-k"] || f.sampling.set["cfg"] {
		t.Fatalf("parsed %+v", f)
	}
}

// The whole native preview: `webvar preview` (built with -tags preview) on var-tiny converted at f32,
// started under Xvfb, generates greedily once and saves its canvas; the image region of that screenshot
// must hold exactly the pixels `webvar generate` writes for the same request on the same backend (the UI
// draws the image nearest-neighbour at an integer scale into uistate.ImageRect), and, computed with
// native WebGPU (lavapipe here), the CPU's pixels within a few levels.
func TestPreviewWindowScreenshotMatchesGenerate(t *testing.T) {
	display := startXvfb(t)
	if testing.Short() {
		t.Skip("window test skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin := buildPreview(ctx, t, tmp)
	wdir := convertVarTiny(t, tmp)
	req := varTinyRequest
	// CPU first: the other runs are also compared with its image. "auto" with an API this machine lacks
	// (Metal on Linux) must fall back to the CPU and say so.
	for _, backend := range []string{"cpu", "webgpu", "auto"} {
		t.Run(backend, func(t *testing.T) {
			ref := filepath.Join(tmp, "generate_"+backend+".png")
			genBackend := backend
			if backend == "auto" {
				genBackend = "cpu"
			}
			rc, _, stderr := runCLI(t, append([]string{"generate", "-weights", wdir, "-backend", genBackend, "-out", ref}, req...)...)
			if rc != 0 {
				t.Fatalf("generate: exit %d: %s", rc, stderr)
			}
			shot := filepath.Join(tmp, "preview_"+backend+".png")
			args := append([]string{"preview", "-weights", wdir, "-backend", backend, "-autostart", "-screenshot", shot}, req...)
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = append(os.Environ(), "DISPLAY="+display)
			if backend == "auto" {
				cmd.Env = append(cmd.Env, "WEBVAR_WGPU_BACKEND=metal")
			}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Run(); err != nil {
				t.Fatalf("webvar %s: %v\n%s", strings.Join(args, " "), err, out.String())
			}
			t.Logf("preview run %.1f s", time.Since(start).Seconds())
			if backend == "auto" && !strings.Contains(out.String(), "computing on the CPU") {
				t.Errorf("-backend auto without an adapter did not say it fell back to the CPU:\n%s", out.String())
			}
			if dir := os.Getenv("WEBVAR_ARTIFACTS"); dir != "" {
				if data, err := os.ReadFile(shot); err != nil {
					t.Error(err)
				} else if err := os.WriteFile(filepath.Join(dir, "preview_"+backend+".png"), data, 0o644); err != nil {
					t.Error(err)
				}
			}
			compareScreenshot(t, readPNG(t, shot), readPNG(t, ref), 1)
			if backend != "cpu" {
				// Same greedy tokens; the decoder's float32 results differ by rounding between backends.
				compareScreenshot(t, readPNG(t, shot), readPNG(t, filepath.Join(tmp, "generate_cpu.png")), 3)
			}
		})
	}

	// FlexVAR in the same window: flexvar-tiny converted, golden run ar2's request (llamagen CFG, steps
	// 1,2,3,5, class 0) from the flags, on the CPU: the window shows generate's image for the same flags.
	t.Run("flexvar", func(t *testing.T) {
		fdir := filepath.Join(tmp, "flexvar")
		rc, _, stderr := runCLI(t, "convert", "-var", testutil.FlexVARTiny("var.pth"), "-vae", testutil.FlexVARTiny("vae.pth"),
			"-patch-nums", "1,2,3,4", "-quant", "f32", "-out", fdir, "-verify", "0")
		if rc != 0 {
			t.Fatalf("convert: exit %d: %s", rc, stderr)
		}
		freq := []string{"-class", "0", "-cfg", "2", "-cfg-mode", "llamagen", "-top-k", "1", "-patch-nums", "1,2,3,5", "-seed", "0"}
		ref := filepath.Join(tmp, "generate_flexvar.png")
		if rc, _, stderr := runCLI(t, append([]string{"generate", "-weights", fdir, "-backend", "cpu", "-out", ref}, freq...)...); rc != 0 {
			t.Fatalf("generate: exit %d: %s", rc, stderr)
		}
		shot := filepath.Join(tmp, "preview_flexvar.png")
		args := append([]string{"preview", "-weights", fdir, "-backend", "cpu", "-autostart", "-screenshot", shot}, freq...)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "DISPLAY="+display)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("webvar %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		if dir := os.Getenv("WEBVAR_ARTIFACTS"); dir != "" {
			if data, err := os.ReadFile(shot); err == nil {
				os.WriteFile(filepath.Join(dir, "preview_flexvar.png"), data, 0o644)
			}
		}
		compareScreenshot(t, readPNG(t, shot), readPNG(t, ref), 1)
	})
	// Editing in the window: the notebook's image in-painted in its box without a class (-autostart edits
	// at once): the window shows webvar edit's image for the same request.
	t.Run("edit", func(t *testing.T) {
		ereq := []string{"-cfg", "4", "-top-k", "1", "-top-p", "0", "-seed", "0"}
		ref := filepath.Join(tmp, "edit.png")
		if rc, _, stderr := runCLI(t, append([]string{"edit", "-weights", wdir, "-image", testutil.VarTiny("edit_input.png"),
			"-box", "0.1,0.1,0.8,0.8", "-class", "10", "-backend", "cpu", "-out", ref}, ereq...)...); rc != 0 {
			t.Fatalf("edit: exit %d: %s", rc, stderr)
		}
		shot := filepath.Join(tmp, "preview_edit.png")
		args := append([]string{"preview", "-weights", wdir, "-backend", "cpu", "-image", testutil.VarTiny("edit_input.png"),
			"-edit", "inpaint", "-box", "0.1,0.1,0.8,0.8", "-no-class", "-autostart", "-screenshot", shot}, ereq...)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "DISPLAY="+display)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("webvar %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		compareScreenshot(t, readPNG(t, shot), readPNG(t, ref), 1)
	})
	// The RQ-Transformer in the same window: rq-tiny's release converted, greedy, class 3.
	t.Run("rq", func(t *testing.T) {
		rdir := filepath.Join(tmp, "rq")
		if rc, _, stderr := runCLI(t, "convert", "-rq", filepath.Join(testutil.Root(), "testdata", "rq-tiny"), "-quant", "f32",
			"-vae-quant", "f32", "-out", rdir, "-verify", "0"); rc != 0 {
			t.Fatalf("convert: exit %d: %s", rc, stderr)
		}
		rreq := []string{"-class", "3", "-top-k", "1", "-seed", "1"}
		ref := filepath.Join(tmp, "generate_rq.png")
		if rc, _, stderr := runCLI(t, append([]string{"generate", "-weights", rdir, "-backend", "cpu", "-out", ref}, rreq...)...); rc != 0 {
			t.Fatalf("generate: exit %d: %s", rc, stderr)
		}
		shot := filepath.Join(tmp, "preview_rq.png")
		args := append([]string{"preview", "-weights", rdir, "-backend", "cpu", "-autostart", "-screenshot", shot}, rreq...)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "DISPLAY="+display)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("webvar %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		compareScreenshot(t, readPNG(t, shot), readPNG(t, ref), 1)
		// The depth stepper at 1 (-depth 1): the window shows the same codes decoded from their first
		// depth alone, which the engine's depth view of the release gives.
		coarse := rqDepthImage(t, filepath.Join(testutil.Root(), "testdata", "rq-tiny"), 3, 1, 1)
		if compareImages(coarse, readPNG(t, ref)) == 0 {
			t.Fatal("rq-tiny's first code depth alone decodes to the image of every depth")
		}
		shot1 := filepath.Join(tmp, "preview_rq_depth1.png")
		args = append([]string{"preview", "-weights", rdir, "-backend", "cpu", "-autostart", "-screenshot", shot1, "-depth", "1"}, rreq...)
		cmd = exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "DISPLAY="+display)
		out.Reset()
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("webvar %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		compareScreenshot(t, readPNG(t, shot1), coarse, 1)
	})
	// MAR in the same window: mar-tiny converted with its default settings (4 iterations, 5 diffusion
	// steps), class 2, seed 7, cfg 2 from the flags: the window shows generate's image.
	t.Run("mar", func(t *testing.T) {
		mdir := filepath.Join(tmp, "mar")
		rc, _, stderr := runCLI(t, "convert", "-var", testutil.MARTiny("mar.pth"), "-vae", testutil.MARTiny("vae.pth"), "-heads", "4",
			"-set", "iters=4", "-set", "diffusion-steps=5", "-quant", "f32", "-vae-quant", "f32", "-out", mdir, "-verify", "0")
		if rc != 0 {
			t.Fatalf("convert: exit %d: %s", rc, stderr)
		}
		mreq := []string{"-class", "2", "-cfg", "2", "-seed", "7"}
		ref := filepath.Join(tmp, "generate_mar.png")
		if rc, _, stderr := runCLI(t, append([]string{"generate", "-weights", mdir, "-backend", "cpu", "-out", ref}, mreq...)...); rc != 0 {
			t.Fatalf("generate: exit %d: %s", rc, stderr)
		}
		shot := filepath.Join(tmp, "preview_mar.png")
		args := append([]string{"preview", "-weights", mdir, "-backend", "cpu", "-autostart", "-screenshot", shot}, mreq...)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "DISPLAY="+display)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("webvar %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		compareScreenshot(t, readPNG(t, shot), readPNG(t, ref), 1)
	})
}

// varTinyRequest is ar1's image 0 of the goldens: class 1, cfg 1.5, greedy.
var varTinyRequest = []string{"-class", "1", "-cfg", "1.5", "-top-k", "1", "-top-p", "0", "-seed", "0"}

// buildPreview builds webvar with the preview window (-tags preview) into dir and returns its path.
func buildPreview(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "webvar")
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-tags", "preview", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags preview: %v\n%s", err, out)
	}
	t.Logf("preview build %.1f s", time.Since(start).Seconds())
	return bin
}

// convertVarTiny converts var-tiny at f32, with class names, into dir/w and returns that directory.
func convertVarTiny(t *testing.T, dir string) string {
	t.Helper()
	wdir := filepath.Join(dir, "w")
	names := filepath.Join(dir, "names.txt")
	if err := os.WriteFile(names, []byte("zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, _, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "f32", "-class-names", names, "-out", wdir, "-verify", "0")
	if rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	return wdir
}

// compareScreenshot checks that every pixel of want appears as a scale x scale block at
// uistate.ImageRect in the screenshot, each channel within tol levels.
func compareScreenshot(t *testing.T, shot, want image.Image, tol int) {
	t.Helper()
	if b := shot.Bounds(); b.Dx() != uistate.Width || b.Dy() != uistate.Height {
		t.Fatalf("screenshot %v, want the %dx%d canvas", b, uistate.Width, uistate.Height)
	}
	r, sc := uistate.ImageRect(want.Bounds().Dx(), want.Bounds().Dy())
	scale := int(sc) // the test images are small: an integer scale
	maxDiff, at := 0, image.Point{}
	for y := 0; y < r.Dy(); y++ {
		for x := 0; x < r.Dx(); x++ {
			sr, sg, sb, _ := shot.At(r.Min.X+x, r.Min.Y+y).RGBA()
			wr, wg, wb, _ := want.At(x/scale, y/scale).RGBA()
			for _, d := range []int{int(sr>>8) - int(wr>>8), int(sg>>8) - int(wg>>8), int(sb>>8) - int(wb>>8)} {
				if d < 0 {
					d = -d
				}
				if d > maxDiff {
					maxDiff, at = d, image.Pt(x, y)
				}
			}
		}
	}
	t.Logf("image region %v (x%d): max channel difference %d at %v", r, scale, maxDiff, at)
	// Same backend: exact in practice; 1 level leaves room for a GL driver's rounding of 8-bit texels.
	if maxDiff > tol {
		t.Fatalf("screenshot image differs from webvar generate's by %d levels at %v (image pixel %v)",
			maxDiff, at, at.Div(scale))
	}
}

// readTokens reads a -tokens file of a VAR or FlexVAR run: {"tokens": [[step 0's ids], ...]}.
func readTokens(t *testing.T, path string) [][]int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tj struct{ Tokens [][]int }
	if err := json.Unmarshal(raw, &tj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return tj.Tokens
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// startXvfb starts a virtual X server on a free display (Xvfb picks it and reports it through
// -displayfd) for the test's lifetime and returns its DISPLAY. Without Xvfb the test is skipped, unless
// WEBVAR_REQUIRE_BROWSER=1 (CI), where that is a failure.
func startXvfb(t *testing.T) string {
	t.Helper()
	xvfb, err := exec.LookPath("Xvfb")
	if err != nil {
		if os.Getenv("WEBVAR_REQUIRE_BROWSER") == "1" {
			t.Fatal("WEBVAR_REQUIRE_BROWSER=1 but Xvfb is not installed (apt-get install xvfb and the X11/GL dev packages in .ci/run)")
		}
		t.Skip("no Xvfb (apt-get install xvfb): the native preview window needs an X display; CI runs this test")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// fd 3 in the child is ExtraFiles[0].
	cmd := exec.Command(xvfb, "-displayfd", "3", "-screen", "0", "1280x1024x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		w.Close()
		t.Fatal(err)
	}
	w.Close()
	// The read end stays open for Xvfb's lifetime: closing it early made Xvfb exit (a later write to a
	// closed pipe).
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		r.Close()
		if t.Failed() {
			t.Logf("Xvfb stderr:\n%s", log.String())
		}
	})
	line := make(chan string, 1)
	go func() {
		buf := make([]byte, 16)
		n, _ := io.ReadAtLeast(r, buf, 1)
		line <- string(buf[:n])
	}()
	select {
	case s := <-line:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("Xvfb reported display %q: %v\n%s", s, err, log.String())
		}
		return fmt.Sprintf(":%d", n)
	case <-time.After(30 * time.Second):
		t.Fatalf("Xvfb did not report a display within 30 s\n%s", log.String())
	}
	return ""
}

// rqDepthImage is the greedy image of class and seed of the RQ release at dir, decoded from its first k
// code depths (gen.DepthViewer).
func rqDepthImage(t *testing.T, dir string, class int, seed uint64, k int) image.Image {
	t.Helper()
	b := cpu.New(0)
	p, err := rq.LoadRelease(dir, b, rq.ReleaseOptions{Open: rqtest.Open})
	if err != nil {
		t.Fatal(err)
	}
	g := p.Generator(b, rq.Defaults{})
	res, err := g.Generate(context.Background(), gen.Request{Labels: []int{class}, Seed: seed, Settings: gen.Settings{"top-k": "1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	x, err := g.(gen.DepthViewer).DecodeDepths(res, k)
	if err != nil {
		t.Fatal(err)
	}
	img, err := core.ToImage(x, 0)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// compareImages is the largest channel difference of two images of the same size, in 8-bit levels.
func compareImages(a, b image.Image) int {
	maxDiff := 0
	for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
		for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
			ar, ag, ab, _ := a.At(x, y).RGBA()
			br, bg, bb, _ := b.At(x, y).RGBA()
			for _, d := range []int{int(ar>>8) - int(br>>8), int(ag>>8) - int(bg>>8), int(ab>>8) - int(bb>>8)} {
				maxDiff = max(maxDiff, d, -d)
			}
		}
	}
	return maxDiff
}
