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
			}
			screenshot(t, cctx, "serve_e2e_rq_"+ui+".png")
		})
	}
}
