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

// Editing in the page, end to end: var-tiny converted, the notebook's input image loaded through the file
// picker, the box of golden case inpaint_null dragged across the image, "no class", Edit: the official
// in-painting tokens, scale by scale (greedy, cfg 4). Then "Use this image" with refinement runs too.
func TestEditInChromium(t *testing.T) {
	chrome := browsertest.RequireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	wdir := filepath.Join(t.TempDir(), "var-tiny")
	if rc, _, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "f32", "-out", wdir, "-verify", "0"); rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	g := testutil.OpenGolden(t, testutil.VarTiny("edit.safetensors"))
	var want [][]int
	for si := 0; g.Has(fmt.Sprintf("edit.inpaint_null.idx.s%d", si)); si++ {
		want = append(want, g.Ints(fmt.Sprintf("edit.inpaint_null.idx.s%d", si)))
	}
	if len(want) != 4 {
		t.Fatalf("golden has %d scales of inpaint_null tokens", len(want))
	}
	app := t.TempDir()
	if err := buildApp(ctx, app, io.Discard); err != nil {
		t.Fatal(err)
	}
	h := newServeHandler(app, os.DirFS(wdir))
	// A host page embedding an editing widget: the notebook's image, the inpaint_null box, no class.
	const host = `<!doctype html><html><body><script src="webvar-widget.js"></script>
<div data-webvar data-image="edit_input.png" data-box="0.1,0.1,0.8,0.8" data-no-class data-cfg="4" data-top-k="1"
  data-top-p="0" data-backend="cpu" data-autostart></div></body></html>`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/edit-widget.html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, host)
		case "/edit_input.png":
			http.ServeFile(w, r, testutil.VarTiny("edit_input.png"))
		default:
			h.ServeHTTP(w, r)
		}
	}))
	defer srv.Close()
	cctx, dump := openPage(ctx, t, chrome, srv.URL+"/?ui=html&backend=cpu&cfg=4&top_k=1&top_p=0&seed=0", false)
	waitState(t, cctx, dump, "ready")
	str := func(js string) string { t.Helper(); return evalString(t, cctx, js) }
	if h := str(`String(document.getElementById("webvar-edit-panel").hidden)`); h != "false" {
		t.Fatalf("edit panel hidden for a VAR model\n%s", dump())
	}
	if _, err := chromedp.Run(cctx, chromedp.SetUploadFiles(chromedp.ID("webvar-edit-file"), []string{testutil.VarTiny("edit_input.png")})); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(cctx, chromedp.Poll[bool](`document.getElementById("webvar-edit-note").textContent.startsWith("editing")`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the image did not load: %v\n%s", err, str(`document.getElementById("webvar-edit-note").textContent`))
	}
	// Drag the box 0.1,0.1 -> 0.8,0.8 across the image, tick "no class", pick in-painting and Edit.
	if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](`(() => {
		const cv = document.getElementById("webvar-canvas"), r = cv.getBoundingClientRect();
		const at = (type, fy, fx) => cv.dispatchEvent(new MouseEvent(type, {bubbles: true,
			clientX: r.left + fx * r.width, clientY: r.top + fy * r.height}));
		at("mousedown", 0.1, 0.1); at("mousemove", 0.5, 0.5); at("mouseup", 0.8, 0.8);
		document.getElementById("webvar-edit-null").checked = true;
		document.getElementById("webvar-edit-mode").value = "inpaint";
		document.body.dataset.state = "clicked";
		document.getElementById("webvar-edit").click();
	})()`)); err != nil {
		t.Fatal(err)
	}
	waitState(t, cctx, dump, "done")
	var got [][]int
	if err := json.Unmarshal([]byte(str(`document.body.dataset.tokens ?? ""`)), &got); err != nil {
		t.Fatalf("dataset.tokens: %v\n%s", err, dump())
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("edit tokens %v, want the notebook's %v", got, want)
	}
	if s := str(`document.getElementById("webvar-status").textContent`); !strings.Contains(s, "edit (inpaint)") {
		t.Errorf("status %q", s)
	}
	screenshot(t, cctx, "serve_e2e_edit.png")
	t.Run("canvas-ui", func(t *testing.T) {
		// The ebiten UI (the page's default) takes the same URL edit and edits at autostart, on the default
		// backend: WebGL2 for the products here (headless Chromium has no WebGPU without a flag).
		q := "/?cfg=4&top_k=1&top_p=0&seed=0&image=edit_input.png&edit=inpaint&box=0.1,0.1,0.8,0.8&no_class=1&autostart=1"
		ectx, edump := openPage(ctx, t, chrome, srv.URL+q, false)
		waitState(t, ectx, edump, "done")
		var ct [][]int
		if err := json.Unmarshal([]byte(evalString(t, ectx, `document.body.dataset.tokens ?? ""`)), &ct); err != nil || !slices.EqualFunc(ct, want, slices.Equal) {
			t.Errorf("canvas UI edit tokens %v (%v), want the notebook's %v", ct, err, want)
		}
		if b := evalString(t, ectx, `document.getElementById("webvar-backend").textContent`); !strings.Contains(b, "WebGL2") {
			t.Logf("the canvas UI edit ran on %q, not WebGL2", b)
		}
		screenshot(t, ectx, "serve_e2e_edit_canvas.png")
	})
	t.Run("widget", func(t *testing.T) {
		wctx, wdump := openPage(ctx, t, chrome, srv.URL+"/edit-widget.html", false)
		state, err := chromedp.Run(wctx, chromedp.Poll[string](`(s => (s === "done" || s === "error") && s)(document.querySelector("[data-webvar]").dataset.state)`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(120*time.Second)))
		if err != nil || state != "done" {
			t.Fatalf("widget state %q (%v)\n%s", state, err, wdump())
		}
		var wt [][]int
		raw := evalString(t, wctx, `document.querySelector("[data-webvar] iframe").contentDocument.body.dataset.tokens ?? ""`)
		if err := json.Unmarshal([]byte(raw), &wt); err != nil || !slices.EqualFunc(wt, want, slices.Equal) {
			t.Errorf("widget edit tokens %v (%v), want the notebook's %v", wt, err, want)
		}
	})
	// Refine the image just made: keep 2 scales.
	if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](`(() => {
		document.getElementById("webvar-edit-use").click();
		document.getElementById("webvar-edit-mode").value = "refine";
		document.getElementById("webvar-edit-k").value = "2";
		document.body.dataset.state = "clicked";
		document.getElementById("webvar-edit").click();
	})()`)); err != nil {
		t.Fatal(err)
	}
	waitState(t, cctx, dump, "done")
	if s := str(`document.getElementById("webvar-status").textContent`); !strings.Contains(s, "edit (refine)") {
		t.Errorf("status after refine %q", s)
	}
	// A brush mask on the notebook's image again: paint the left half (brush 0.2 of the width), in-paint,
	// class 3: every position of the last scale that the painting does not cover keeps the input's token.
	// (The picker holds the same file already: clear it so that choosing it again is a change.)
	if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](`(() => {
		document.getElementById("webvar-edit-note").textContent = "";
		document.getElementById("webvar-edit-file").value = "";
	})()`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(cctx, chromedp.SetUploadFiles(chromedp.ID("webvar-edit-file"), []string{testutil.VarTiny("edit_input.png")})); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(cctx, chromedp.Poll[bool](`document.getElementById("webvar-edit-note").textContent.startsWith("editing")`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the image did not load again: %v", err)
	}
	if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](`(() => {
		document.getElementById("webvar-edit-brush").value = "0.2";
		const cv = document.getElementById("webvar-canvas"), r = cv.getBoundingClientRect();
		const at = (type, fy, fx) => cv.dispatchEvent(new MouseEvent(type, {bubbles: true,
			clientX: r.left + fx * r.width, clientY: r.top + fy * r.height}));
		at("mousedown", 0.05, 0.1);
		for (let y = 0.05; y <= 0.95; y += 0.05) { at("mousemove", y, 0.1); at("mousemove", y, 0.3); }
		at("mouseup", 0.95, 0.3);
		document.getElementById("webvar-edit-null").checked = false;
		document.getElementById("webvar-class").value = "3";
		document.getElementById("webvar-edit-mode").value = "inpaint";
		document.body.dataset.state = "clicked";
		document.getElementById("webvar-edit").click();
	})()`)); err != nil {
		t.Fatal(err)
	}
	waitState(t, cctx, dump, "done")
	if err := json.Unmarshal([]byte(str(`document.body.dataset.tokens ?? ""`)), &got); err != nil {
		t.Fatalf("dataset.tokens: %v\n%s", err, dump())
	}
	in := g.Ints("edit.input_idx.s3")
	last := got[len(got)-1]
	kept, regen := 0, 0
	for i, id := range last { // 4 x 4: the right half (columns 2, 3) is not painted
		if i%4 >= 2 {
			kept++
			if id != in[i] {
				t.Errorf("unpainted position %d: token %d, the input's %d", i, id, in[i])
			}
		} else if id != in[i] {
			regen++
		}
	}
	if kept != 8 || regen == 0 {
		t.Errorf("brush edit: %d kept positions, %d regenerated ones changed", kept, regen)
	}
	screenshot(t, cctx, "serve_e2e_edit_brush.png")
}
