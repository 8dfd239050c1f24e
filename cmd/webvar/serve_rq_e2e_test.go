package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/webvar/webvar/internal/browsertest"
	"github.com/webvar/webvar/internal/testutil"
)

// The RQ-Transformer in the page, end to end: rq-tiny's release converted (webvar convert -rq), offered in
// the model menu, generated greedily in headless Chromium (CPU in wasm) by both UIs with the class of the
// golden run's first image: the official codes, position by position.
func TestRQInChromium(t *testing.T) {
	chrome := browsertest.RequireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	rel := filepath.Join(testutil.Root(), "testdata", "rq-tiny")
	wdir := filepath.Join(t.TempDir(), "rq-tiny")
	if rc, _, stderr := runCLI(t, "convert", "-rq", rel, "-quant", "f32", "-vae-quant", "f32", "-out", wdir, "-verify", "0"); rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	g := testutil.OpenGolden(t, filepath.Join(rel, "golden.safetensors"))
	class, all := g.Ints("ar.cond")[0], g.Ints("ar.codes")
	want := all[:len(all)/len(g.Ints("ar.cond"))] // image 0: H*W positions of D codes
	app := t.TempDir()
	if err := buildApp(ctx, app, io.Discard); err != nil {
		t.Fatal(err)
	}
	models := append([]servedModel{{Name: "rq-tiny", FS: os.DirFS(wdir)}}, demoModels()...)
	if err := checkModels(models); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newServeHandlerModels(app, models))
	defer srv.Close()
	query := fmt.Sprintf("?backend=cpu&class=%d&top_k=1&autostart=1", class)
	for _, ui := range []string{"html", "canvas"} {
		t.Run(ui, func(t *testing.T) {
			q := query
			if ui == "html" {
				q += "&ui=html"
			}
			cctx, dump := openPage(ctx, t, chrome, srv.URL+"/"+q, false)
			waitState(t, cctx, dump, "done")
			var steps [][]int
			if err := json.Unmarshal([]byte(evalString(t, cctx, `document.body.dataset.tokens ?? ""`)), &steps); err != nil {
				t.Fatalf("dataset.tokens: %v\n%s", err, dump())
			}
			got := slices.Concat(steps...)
			if !slices.Equal(got, want) {
				t.Errorf("codes %v, want the official %v", got, want)
			}
			if ui == "html" {
				if m := evalString(t, cctx, `[...document.getElementById("webvar-model-menu").options].map(o => o.text + (o.selected ? "*" : "")).join(" | ")`); !strings.Contains(m, "rq-tiny (RQ-Transformer, 10 classes)*") {
					t.Errorf("model menu %q", m)
				}
				if s := evalString(t, cctx, `document.getElementById("webvar-status").textContent`); !strings.Contains(s, "position") {
					t.Errorf("status %q does not count positions", s)
				}
				checkDepthSlider(t, cctx, dump, len(want)/len(steps))
			}
			screenshot(t, cctx, "serve_e2e_rq_"+ui+".png")
		})
	}
	// The trained demo model from the menu's URL at its own sampling defaults (top-k 4): the page draws the
	// codes `webvar generate` draws for the same class and seed.
	t.Run("fashionrq", func(t *testing.T) {
		ref := filepath.Join(t.TempDir(), "codes.json")
		if rc, _, stderr := runCLI(t, "generate", "-demo", "fashionrq", "-class", "8", "-seed", "2", "-backend", "cpu",
			"-out", filepath.Join(t.TempDir(), "ref.png"), "-tokens", ref); rc != 0 {
			t.Fatalf("generate: exit %d: %s", rc, stderr)
		}
		var codes struct{ Codes [][][]int }
		if data, err := os.ReadFile(ref); err != nil || json.Unmarshal(data, &codes) != nil || len(codes.Codes) != 4 {
			t.Fatalf("reference codes: %v %s", err, ref)
		}
		var want []int
		for _, row := range codes.Codes {
			for _, col := range row {
				want = append(want, col...)
			}
		}
		cctx, dump := openPage(ctx, t, chrome, srv.URL+"/?ui=html&backend=cpu&class=8&seed=2&autostart=1&model=models/fashionrq/", false)
		waitState(t, cctx, dump, "done")
		var steps [][]int
		if err := json.Unmarshal([]byte(evalString(t, cctx, `document.body.dataset.tokens ?? ""`)), &steps); err != nil {
			t.Fatalf("dataset.tokens: %v\n%s", err, dump())
		}
		if got := slices.Concat(steps...); !slices.Equal(got, want) {
			t.Errorf("codes %v, generate's %v", got, want)
		}
		if m := evalString(t, cctx, `[...document.getElementById("webvar-model-menu").options].filter(o => o.selected).map(o => o.text).join()`); m != "fashionrq (RQ-Transformer, 10 classes)" {
			t.Errorf("model menu shows %q", m)
		}
		screenshot(t, cctx, "serve_e2e_fashionrq_html.png")
	})
}

// checkDepthSlider moves the page's depth slider (RQ's code depths, d of them) to 1 and back: the canvas
// shows a different image from the first depth alone, and exactly the generated one again at every depth.
func checkDepthSlider(t *testing.T, cctx context.Context, dump func() string, d int) {
	t.Helper()
	const pixels = `(() => { const c = document.getElementById("webvar-canvas");
		return Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data).join(","); })()`
	if got := evalString(t, cctx, `[document.getElementById("webvar-depth-panel").hidden, document.getElementById("webvar-depth").max,
		document.getElementById("webvar-depth-label").textContent, document.body.dataset.depth].join()`); got != fmt.Sprintf("false,%d,%d/%d,%d", d, d, d, d) {
		t.Fatalf("after the run the depth slider (hidden, max, label, dataset.depth) is %q, want every one of %d depths shown", got, d)
	}
	full := evalString(t, cctx, pixels)
	move := func(k int) {
		t.Helper()
		evalString(t, cctx, fmt.Sprintf(`(() => { const el = document.getElementById("webvar-depth");
			el.value = "%d"; el.dispatchEvent(new Event("input")); return ""; })()`, k))
		for deadline := time.Now().Add(30 * time.Second); evalString(t, cctx, `document.body.dataset.depth ?? ""`) != fmt.Sprint(k); {
			if time.Now().After(deadline) {
				t.Fatalf("dataset.depth never became %d\n%s", k, dump())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if l := evalString(t, cctx, `document.getElementById("webvar-depth-label").textContent`); l != fmt.Sprintf("%d/%d", k, d) {
			t.Errorf("depth label %q at depth %d", l, k)
		}
	}
	move(1)
	if coarse := evalString(t, cctx, pixels); coarse == full {
		t.Error("the canvas from the first code depth alone is the image of every depth")
	}
	move(d)
	if back := evalString(t, cctx, pixels); back != full {
		t.Error("back at every depth, the canvas is not the generated image")
	}
}
