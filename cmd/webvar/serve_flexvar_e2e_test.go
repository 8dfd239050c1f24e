package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/webvar/webvar/internal/browsertest"
	"github.com/webvar/webvar/internal/testutil"
)

// FlexVAR in the page, end to end: flexvar-tiny converted, offered in the model menu beside the demo
// model, generated in headless Chromium (on the CPU in wasm: SwiftShader's WebGPU takes minutes for the
// tokenizer's decoder; the kernels run in Chromium's WebGPU in internal/browsertest) by both UIs, with
// the official greedy tokens of golden run ar2 (llamagen CFG, schedule 1,2,3,5, class 0); then a 16:9
// image from the HTML page's own inputs.
func TestFlexVARInChromium(t *testing.T) {
	chrome := browsertest.RequireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	wdir := filepath.Join(t.TempDir(), "flexvar-tiny")
	rc, _, stderr := runCLI(t, "convert", "-var", testutil.FlexVARTiny("var.pth"), "-vae", testutil.FlexVARTiny("vae.pth"),
		"-patch-nums", "1,2,3,4", "-quant", "f32", "-out", wdir, "-verify", "0")
	if rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	app := t.TempDir()
	if err := buildApp(ctx, app, io.Discard); err != nil {
		t.Fatal(err)
	}
	models := append([]servedModel{{Name: "flexvar-tiny", FS: os.DirFS(wdir)}}, demoModels()...)
	if err := checkModels(models); err != nil {
		t.Fatal(err)
	}
	h := newServeHandlerModels(app, models)
	// A host page embedding a FlexVAR widget with its settings as data-* attributes.
	const host = `<!doctype html><html><body><script src="webvar-widget.js"></script>
<div data-webvar data-model="weights/" data-class="0" data-cfg="2" data-cfg-mode="llamagen" data-top-k="1"
  data-schedule="1,2,3,5" data-backend="cpu" data-autostart></div></body></html>`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flexvar-widget.html" {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, host)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	g := testutil.OpenGolden(t, testutil.FlexVARTiny("golden.safetensors"))
	var want [][]int
	for si := 0; si < 4; si++ {
		ids := g.Ints(fmt.Sprintf("ar2.idx.s%d", si))
		want = append(want, ids[:len(ids)/2]) // image 0: class 0
	}
	const query = "?backend=cpu&class=0&cfg=2&cfg_mode=llamagen&top_k=1&schedule=1,2,3,5&autostart=1"
	tokensOf := func(t *testing.T, page string) (context.Context, [][]int) {
		cctx, dump := openPage(ctx, t, chrome, srv.URL+"/"+page, false)
		waitState(t, cctx, dump, "done")
		var tk [][]int
		if err := json.Unmarshal([]byte(evalString(t, cctx, `document.body.dataset.tokens ?? ""`)), &tk); err != nil {
			t.Fatalf("dataset.tokens: %v\n%s", err, dump())
		}
		return cctx, tk
	}
	t.Run("html", func(t *testing.T) {
		cctx, got := tokensOf(t, query+"&ui=html")
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("tokens %v, want the official %v", got, want)
		}
		str := func(js string) string { t.Helper(); return evalString(t, cctx, js) }
		// The model's own controls, filled from the URL; no randomize experiment; the model menu lists both.
		if got := str(`["webvar-schedule", "webvar-cfg-mode", "webvar-aspect", "webvar-max-pn"].map(i => document.getElementById(i)?.value).join(" ")`); got != "1,2,3,5 llamagen 1:1 16" {
			t.Errorf("FlexVAR inputs %q", got)
		}
		if d := str(`getComputedStyle(document.getElementById("webvar-randomize")).display`); d != "none" {
			t.Errorf("randomize button shown (%s) for FlexVAR", d)
		}
		if m := str(`[...document.getElementById("webvar-model-menu").options].map(o => o.text + "=" + o.value + (o.selected ? "*" : "")).join(" | ")`); !strings.Contains(m, "flexvar-tiny (FlexVAR, 10 classes)=weights/*") || !strings.Contains(m, "fashionvar (VAR, 10 classes)=models/fashionvar/") {
			t.Errorf("model menu %q", m)
		}
		// Another aspect ratio from the page's own inputs: a wider image.
		if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](`document.getElementById("webvar-aspect").value = "16:9";
			document.body.dataset.state = "clicked"; document.getElementById("webvar-generate").click()`)); err != nil {
			t.Fatal(err)
		}
		waitState(t, cctx, func() string { return "" }, "done")
		if wh := str(`(c => c.width + "x" + c.height)(document.getElementById("webvar-canvas"))`); wh != "112x64" {
			t.Errorf("16:9 canvas %s, want 112x64 (grids 1x1, 2x3, 2x4, 4x7 of 16-pixel tokens)", wh)
		}
		screenshot(t, cctx, "serve_e2e_flexvar_html.png")
	})
	t.Run("widget", func(t *testing.T) {
		cctx, dump := openPage(ctx, t, chrome, srv.URL+"/flexvar-widget.html", false)
		state, err := chromedp.Run(cctx, chromedp.Poll[string](`(s => (s === "done" || s === "error") && s)(document.querySelector("[data-webvar]").dataset.state)`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(120*time.Second)))
		if err != nil || state != "done" {
			t.Fatalf("widget state %q (%v)\n%s", state, err, dump())
		}
		var got [][]int
		raw := evalString(t, cctx, `document.querySelector("[data-webvar] iframe").contentDocument.body.dataset.tokens ?? ""`)
		if err := json.Unmarshal([]byte(raw), &got); err != nil || !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("widget tokens %v (%v), want the official %v", got, err, want)
		}
	})
	t.Run("canvas-ui", func(t *testing.T) {
		cctx, got := tokensOf(t, query)
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("canvas UI tokens %v, want the official %v", got, want)
		}
		screenshot(t, cctx, "serve_e2e_flexvar_canvas.png")
	})
}
