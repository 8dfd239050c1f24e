package main

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webvar/webvar/internal/browsertest"
	"github.com/webvar/webvar/internal/testutil"
)

// MAR in the page, end to end: mar-tiny converted (4 iterations, 5 diffusion steps), offered in the model
// menu beside the demo models, generated in headless Chromium (CPU in wasm) by both UIs with the class,
// seed and cfg from the URL; the HTML page's latents equal `webvar generate`'s for the same settings
// (webvar's own seeded draws; the wasm build's float32 sums differ from the native SIMD ones in the last
// bits, which the diffusion head's large-t step amplifies, hence a relative tolerance).
func TestMARInChromium(t *testing.T) {
	chrome := browsertest.RequireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	wdir := filepath.Join(t.TempDir(), "mar-tiny")
	rc, _, stderr := runCLI(t, "convert", "-var", testutil.MARTiny("mar.pth"), "-vae", testutil.MARTiny("vae.pth"), "-heads", "4",
		"-set", "iters=4", "-set", "diffusion-steps=5", "-quant", "f32", "-vae-quant", "f32", "-out", wdir, "-verify", "0")
	if rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	ref := filepath.Join(t.TempDir(), "ref.json")
	if rc, _, stderr := runCLI(t, "generate", "-weights", wdir, "-class", "2", "-seed", "7", "-cfg", "2", "-out", filepath.Join(t.TempDir(), "ref.png"), "-tokens", ref); rc != 0 {
		t.Fatalf("generate: exit %d: %s", rc, stderr)
	}
	var want struct{ Latents [][]float32 }
	if data, err := os.ReadFile(ref); err != nil || json.Unmarshal(data, &want) != nil || len(want.Latents) != 16 {
		t.Fatalf("reference latents: %v %s", err, ref)
	}
	app := t.TempDir()
	if err := buildApp(ctx, app, io.Discard); err != nil {
		t.Fatal(err)
	}
	models := append([]servedModel{{Name: "mar-tiny", FS: os.DirFS(wdir)}}, demoModels()...)
	if err := checkModels(models); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newServeHandlerModels(app, models))
	defer srv.Close()
	const query = "?backend=cpu&class=2&seed=7&cfg=2&autostart=1"
	t.Run("html", func(t *testing.T) {
		cctx, dump := openPage(ctx, t, chrome, srv.URL+"/"+query+"&ui=html", false)
		waitState(t, cctx, dump, "done")
		var got [][]float32
		if err := json.Unmarshal([]byte(evalString(t, cctx, `document.body.dataset.latents ?? ""`)), &got); err != nil {
			t.Fatalf("dataset.latents: %v\n%s", err, dump())
		}
		var flat, ref []float32
		for i := range want.Latents {
			if i < len(got) {
				flat = append(flat, got[i]...)
			}
			ref = append(ref, want.Latents[i]...)
		}
		if len(flat) != len(ref) {
			t.Fatalf("%d latent values, want %d", len(flat), len(ref))
		}
		var d, m float64
		for i := range ref {
			d = math.Max(d, math.Abs(float64(flat[i]-ref[i])))
			m = math.Max(m, math.Abs(float64(ref[i])))
		}
		if d > 1e-3*m {
			t.Errorf("latents differ from generate's by %g (max |value| %g)", d, m)
		}
		str := func(js string) string { t.Helper(); return evalString(t, cctx, js) }
		// MAR's own controls, with the model's defaults; the model menu lists it beside the demo models.
		if got := str(`["webvar-iters", "webvar-diffusion-steps", "webvar-temperature", "webvar-cfg-schedule", "webvar-cfg"].map(i => document.getElementById(i)?.value).join(" ")`); got != "4 5 1 linear 2" {
			t.Errorf("MAR inputs %q", got)
		}
		if m := str(`[...document.getElementById("webvar-model-menu").options].map(o => o.text + "=" + o.value + (o.selected ? "*" : "")).join(" | ")`); !strings.Contains(m, "mar-tiny (MAR, 4 classes)=weights/*") {
			t.Errorf("model menu %q", m)
		}
		for _, id := range []string{"webvar-reroll", "webvar-randomize"} {
			if d := str(`getComputedStyle(document.getElementById("` + id + `")).display`); d != "none" {
				t.Errorf("%s shown (%s) for MAR", id, d)
			}
		}
		if s := str(`document.getElementById("webvar-status").textContent`); !strings.Contains(s, "iteration") {
			t.Errorf("status %q does not count iterations", s)
		}
		screenshot(t, cctx, "serve_e2e_mar_html.png")
	})
	t.Run("canvas-ui", func(t *testing.T) {
		cctx, dump := openPage(ctx, t, chrome, srv.URL+"/"+query, false)
		waitState(t, cctx, dump, "done")
		screenshot(t, cctx, "serve_e2e_mar_canvas.png")
	})
	// The trained demo model from the menu's URL (fewer diffusion steps than its default, for time): its
	// latents equal generate's for the same settings, as for mar-tiny.
	t.Run("fashionmar", func(t *testing.T) {
		ref := filepath.Join(t.TempDir(), "ref.json")
		if rc, _, stderr := runCLI(t, "generate", "-demo", "fashionmar", "-class", "8", "-seed", "2", "-iters", "4",
			"-diffusion-steps", "20", "-out", filepath.Join(t.TempDir(), "ref.png"), "-tokens", ref); rc != 0 {
			t.Fatalf("generate: exit %d: %s", rc, stderr)
		}
		var want struct{ Latents [][]float32 }
		if data, err := os.ReadFile(ref); err != nil || json.Unmarshal(data, &want) != nil || len(want.Latents) != 16 {
			t.Fatalf("reference latents: %v %s", err, ref)
		}
		cctx, dump := openPage(ctx, t, chrome, srv.URL+"/?ui=html&backend=cpu&class=8&seed=2&iters=4&diffusion-steps=20&autostart=1&model=models/fashionmar/", false)
		waitState(t, cctx, dump, "done")
		var got [][]float32
		if err := json.Unmarshal([]byte(evalString(t, cctx, `document.body.dataset.latents ?? ""`)), &got); err != nil || len(got) != 16 {
			t.Fatalf("dataset.latents: %v (%d rows)\n%s", err, len(got), dump())
		}
		var d, m float64
		for i := range want.Latents {
			for j := range want.Latents[i] {
				d = math.Max(d, math.Abs(float64(got[i][j]-want.Latents[i][j])))
				m = math.Max(m, math.Abs(float64(want.Latents[i][j])))
			}
		}
		if d > 1e-3*m {
			t.Errorf("latents differ from generate's by %g (max |value| %g)", d, m)
		}
		if m := evalString(t, cctx, `[...document.getElementById("webvar-model-menu").options].filter(o => o.selected).map(o => o.text).join()`); m != "fashionmar (MAR, 10 classes)" {
			t.Errorf("model menu shows %q", m)
		}
		screenshot(t, cctx, "serve_e2e_fashionmar_html.png")
	})
}
