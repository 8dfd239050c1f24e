package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// testControls drives the demo page through its inputs on the CPU fallback: a generation set up in the
// inputs, Save PNG, reroll from scale k, randomize after scale k, and Cancel in the middle of a run.
func testControls(ctx context.Context, t *testing.T, chrome, base string) {
	// No sampling settings in the URL: the inputs supply them.
	// backend=cpu: the plain CPU in wasm (the other fallback pages use WebGL2 for the products).
	cctx, dump := openPage(ctx, t, chrome, base+"/?ui=html&backend=cpu", false)
	eval := func(js string) {
		t.Helper()
		if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](js)); err != nil {
			t.Fatalf("%v\n%s", err, js)
		}
	}
	str := func(js string) string { t.Helper(); return evalString(t, cctx, js) }
	waitState(t, cctx, dump, "ready")
	if bk := str(`document.getElementById("webvar-backend").textContent`); !strings.HasSuffix(bk, "using the CPU") || strings.Contains(bk, "WebGL2 (") {
		t.Errorf("backend=cpu: the page says %q, want the CPU alone", bk)
	}
	if n := str(`String(document.getElementById("webvar-class").options.length)`); n != "10" {
		t.Errorf("the class selector has %s options, want var-tiny's 10 classes", n)
	}
	// The page's own defaults (var-tiny's manifest has no sampling settings), then the request of cpuImage.
	if got := str(`["cfg", "topk", "topp"].map(i => document.getElementById("webvar-" + i).value).join(" ")`); got != "4 900 0.95" {
		t.Errorf("sampling inputs %q, want the page defaults 4 900 0.95", got)
	}
	// click resets the state first so that a wait cannot see the previous run's "done".
	click := func(id string) {
		t.Helper()
		eval(fmt.Sprintf(`document.body.dataset.state = "clicked"; document.getElementById(%q).click()`, id))
	}
	set := func(id, v string) {
		t.Helper()
		eval(fmt.Sprintf(`document.getElementById(%q).value = %q`, id, v))
	}
	set("webvar-class", "5")
	set("webvar-cfg", "1.5")
	set("webvar-topk", "1")
	set("webvar-topp", "0")
	set("webvar-seed", "0")
	click("webvar-generate")
	if !waitAndCompare(t, cctx, dump, cpuImage(t, 5)) {
		return
	}
	screenshot(t, cctx, "serve_e2e_controls.png")

	// Save PNG: the download goes through an <a download>; record it instead of letting the browser save.
	eval(`window.saved = null; HTMLAnchorElement.prototype.click = function () { window.saved = [this.download, this.href.slice(0, 22)]; }`)
	eval(`document.getElementById("webvar-save").click()`)
	// The name is uistate.State.SaveName's, the same as the canvas UI's and the preview window's.
	if got := str(`JSON.stringify(window.saved)`); got != `["5-seed0.png","data:image/png;base64,"]` {
		t.Errorf("Save PNG made %s, want 5-seed0.png as a PNG data URL", got)
	}

	tokens := func() [][]int {
		t.Helper()
		var tk [][]int
		if err := json.Unmarshal([]byte(str(`document.body.dataset.tokens ?? ""`)), &tk); err != nil {
			t.Fatalf("dataset.tokens: %v", err)
		}
		return tk
	}
	greedy := tokens()
	if len(greedy) != 4 {
		t.Fatalf("dataset.tokens has %d scales, want 4", len(greedy))
	}

	// Reroll from scale 2, sampled: the first two scales stay, the seed changes.
	set("webvar-topk", "50")
	set("webvar-topp", "0.95")
	set("webvar-k", "2")
	click("webvar-reroll")
	waitState(t, cctx, dump, "done")
	rerolled := tokens()
	if !slices.EqualFunc(rerolled[:2], greedy[:2], slices.Equal) {
		t.Errorf("reroll from scale 2: first scales %v, want the last image's %v", rerolled[:2], greedy[:2])
	}
	if seed := str(`document.getElementById("webvar-seed").value`); seed == "0" {
		t.Errorf("reroll kept seed 0, want a new one")
	}
	t.Logf("reroll from scale 2: scales 3-4 changed: %v", !slices.EqualFunc(rerolled[2:], greedy[2:], slices.Equal))

	// Randomize after scale 2 on the greedy request: the first two scales are the greedy ones, the rest
	// uniform random tokens (the chance that 25 of them equal the greedy ones is nil).
	set("webvar-topk", "1")
	set("webvar-topp", "0")
	set("webvar-seed", "0")
	click("webvar-randomize")
	waitState(t, cctx, dump, "done")
	random := tokens()
	if !slices.EqualFunc(random[:2], greedy[:2], slices.Equal) {
		t.Errorf("randomize after scale 2: first scales %v, want the greedy %v", random[:2], greedy[:2])
	}
	if slices.EqualFunc(random[2:], greedy[2:], slices.Equal) {
		t.Errorf("randomize after scale 2 left scales 3-4 greedy: %v", random[2:])
	}

	// Cancel while generating: an observer clicks Cancel as soon as the page says "generating" (it runs
	// when the app first yields, after scale 1), so the run must stop between scales and the page go
	// back to "ready" without an error.
	eval(`new MutationObserver((_, obs) => {
		if (document.body.dataset.state === "generating") {
			obs.disconnect();
			document.getElementById("webvar-cancel").click();
		}
	}).observe(document.body, {attributes: true, attributeFilter: ["data-state"]})`)
	click("webvar-generate")
	waitState(t, cctx, dump, "ready")
	status := str(`document.getElementById("webvar-status").textContent`)
	if !strings.Contains(status, "cancelled after scale") || strings.Contains(status, "4/4") {
		t.Errorf("after Cancel the status says %q, want cancelled before the last scale", status)
	}
	if e := str(`document.body.dataset.error ?? ""`); e != "" {
		t.Errorf("after Cancel dataset.error = %q", e)
	}
	t.Logf("cancel: %s", status)
	// The page stays usable: the same request again draws the CPU image.
	click("webvar-generate")
	waitAndCompare(t, cctx, dump, cpuImage(t, 5))
}

// evalString evaluates a JavaScript expression with a string value in the page; an error fails t.
func evalString(t *testing.T, cctx context.Context, js string) string {
	t.Helper()
	v, err := chromedp.Run(cctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	return v
}

// waitState polls until the page's state is want; "error" (when not wanted) fails at once.
func waitState(t *testing.T, cctx context.Context, dump func() string, want string) {
	t.Helper()
	start := time.Now()
	state, err := chromedp.Run(cctx, chromedp.Poll[string](
		fmt.Sprintf(`[%q, "error"].includes(document.body.dataset.state) && document.body.dataset.state`, want),
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(120*time.Second)))
	if err != nil {
		t.Fatalf("waiting for state %q: %v\n%s", want, err, dump())
	}
	if state != want {
		msg, _ := chromedp.Run(cctx, chromedp.Evaluate[string](`document.body.dataset.error ?? ""`))
		t.Fatalf("state %q, want %q: %s\n%s", state, want, msg, dump())
	}
	t.Logf("state %s after %.1f s", want, time.Since(start).Seconds())
}

// testEmbed opens the embedding example (two widgets of different classes, each an iframe of the demo
// page in embed mode) and waits until both host elements say "done" through the widget's postMessage.
func testEmbed(ctx context.Context, t *testing.T, chrome, base string) {
	cctx, dump := openPage(ctx, t, chrome, base+"/embed.html", false)
	start := time.Now()
	states, err := chromedp.Run(cctx, chromedp.Poll[string](`(() => {
		const s = [...document.querySelectorAll("[data-webvar]")].map(e => e.dataset.state);
		return s.length === 2 && s.every(x => x === "done" || x === "error") && s.join(" ");
	})()`, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(120*time.Second)))
	if err != nil {
		t.Fatalf("waiting for both widgets: %v\n%s", err, dump())
	}
	if states != "done done" {
		errs, _ := chromedp.Run(cctx, chromedp.Evaluate[string](
			`[...document.querySelectorAll("[data-webvar]")].map(e => e.dataset.error ?? "").join(" | ")`))
		t.Fatalf("widget states %q (%s)\n%s", states, errs, dump())
	}
	t.Logf("both widgets done in %.1f s", time.Since(start).Seconds())
	// Each frame runs its own app: embed mode, its own class, and a drawn 64x64 canvas.
	got, err := chromedp.Run(cctx, chromedp.Evaluate[string](`[...document.querySelectorAll("[data-webvar] iframe")].map(f => {
		const d = f.contentDocument, c = d.getElementById("webvar-canvas");
		const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
		return [d.documentElement.className, d.getElementById("webvar-class").value, c.width, px.some(v => v !== 0 && v !== 255)].join(",");
	}).join(" ")`))
	if err != nil {
		t.Fatal(err)
	}
	if got != "embed,7,64,true embed,0,64,true" {
		t.Errorf("widget frames: %q, want embed mode, classes 7 and 0, drawn 64x64 canvases", got)
	}
	screenshot(t, cctx, "serve_e2e_embed.png")
}

// testCanvasUI opens the demo (by default the ebiten UI of webvar preview, built into webvar-canvas.wasm) on the CPU fallback and autostarts a greedy generation: the page must reach "done"
// without console errors, with the tokens the HTML page produces for the same URL, and ebiten's canvas
// must show a drawn UI (many distinct colours, not a blank page).
func testCanvasUI(ctx context.Context, t *testing.T, chrome, base string) {
	const query = "?class=5&cfg=1.5&top_k=1&top_p=0&seed=0&autostart=1"
	tokensOf := func(page string) (context.Context, string) {
		cctx, dump := openPage(ctx, t, chrome, base+"/"+page, false)
		waitState(t, cctx, dump, "done")
		tk, err := chromedp.Run(cctx, chromedp.Evaluate[string](`document.body.dataset.tokens ?? ""`))
		if err != nil {
			t.Fatal(err)
		}
		return cctx, tk
	}
	_, want := tokensOf(query + "&ui=html")
	cctx, got := tokensOf(query) // the ebiten UI is the default
	if got == "" || got != want {
		t.Errorf("canvas UI tokens %s, the HTML page's %s", got, want)
	}
	// The HTML page's controls and canvas are hidden; ebiten's canvas is the one shown.
	if n, err := chromedp.Run(cctx, chromedp.Evaluate[int](`Array.from(document.querySelectorAll("canvas, form")).filter(e => e.offsetParent !== null).length`)); err != nil || n != 1 {
		t.Errorf("the canvas page shows %d canvases and forms (%v), want only ebiten's canvas", n, err)
	}
	if bk, err := chromedp.Run(cctx, chromedp.Evaluate[string](`document.getElementById("webvar-backend").textContent`)); err != nil || !strings.Contains(bk, "WebGPU unavailable") {
		t.Errorf("the canvas page's backend line %q (%v) does not name the fallback", bk, err)
	}
	shot, err := chromedp.Run(cctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	colors := map[color.RGBA]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			colors[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)] = true
		}
	}
	t.Logf("canvas page screenshot %v: %d distinct colours", b.Size(), len(colors))
	if len(colors) < 50 { // text, buttons and the image; a blank or single-colour page has a handful
		t.Errorf("the canvas page shows %d distinct colours: the ebiten UI was not drawn", len(colors))
	}
	if dir := os.Getenv("WEBVAR_ARTIFACTS"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "serve_e2e_canvas_ui.png"), shot, 0o644); err != nil {
			t.Error(err)
		}
	}
}
