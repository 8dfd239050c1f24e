package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/internal/browsertest"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/ui/uistate"
	"github.com/webvar/webvar/weights/fashionvar"
)

// The whole browser app: var-tiny converted at f32, served by the serve handler, generated in headless
// Chromium (WebGPU on SwiftShader), must draw the image the CPU backend computes for the same request.
func TestServeEndToEndInChromium(t *testing.T) {
	chrome := browsertest.RequireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	wdir := filepath.Join(t.TempDir(), "w")
	rc, _, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "f32", "-out", wdir, "-verify", "0")
	if rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	app := t.TempDir()
	start := time.Now()
	if err := buildApp(ctx, app, io.Discard); err != nil {
		t.Fatal(err)
	}
	t.Logf("wasm build %.1f s", time.Since(start).Seconds())
	// Count the chunk downloads: a reload must take every chunk from the browser's Cache API.
	var chunkReqs atomic.Int64
	gate := newChunkGate() // open except in the cancel-download tests
	h := newServeHandler(app, os.DirFS(wdir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/weights/") && strings.HasPrefix(path.Base(r.URL.Path), "chunk-") {
			chunkReqs.Add(1)
			gate.wait(r)
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	want := cpuImage(t, 1)
	// The demo page as a user opens it: the ebiten UI (the default; the HTML controls are ui=html).
	page := srv.URL + "/?class=1&cfg=1.5&top_k=1&top_p=0&seed=0&autostart=1"
	// Without --enable-unsafe-webgpu, Chromium on Linux has no WebGPU: the page must fall back to the CPU
	// backend, say so, and draw the same image.
	t.Run("webgpu", func(t *testing.T) { testPage(ctx, t, chrome, page, true, want, "serve_e2e_webgpu.png") })
	t.Run("cpu-fallback", func(t *testing.T) {
		before := chunkReqs.Load()
		cctx := testPage(ctx, t, chrome, page, false, want, "serve_e2e_cpu.png") // a fresh profile: every chunk is downloaded
		if cctx == nil || t.Failed() {
			return
		}
		first := chunkReqs.Load() - before
		if first <= 0 {
			t.Fatalf("the first load made %d chunk requests, want > 0", first)
		}
		note := func() string {
			s, _ := chromedp.Run(cctx, chromedp.Evaluate[string](`document.getElementById("webvar-model").textContent`))
			return s
		}
		if s := note(); !strings.Contains(s, "0.0 MB from cache") {
			t.Errorf("first load in a fresh profile says %q, want nothing from the cache", s)
		}
		// Reload in the same profile. The HTTP cache is cleared first (chunks are served immutable, so it
		// would hide them from the server too): only the app's Cache API store may supply them.
		clearHTTPCache := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, network.ClearBrowserCache, cdp.Empty{})
			return err
		})
		if err := chromedp.Do(cctx, clearHTTPCache, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		if !waitAndCompare(t, cctx, nil, want) {
			return
		}
		if n := chunkReqs.Load() - before - first; n != 0 {
			t.Errorf("the reload made %d chunk requests (the first load %d), want 0", n, first)
		}
		if s := note(); !strings.Contains(s, "MB from cache, 0.0 MB from the network") || strings.Contains(s, "0.0 MB from cache") {
			t.Errorf("after the reload the page says %q, want every byte from the cache", s)
		} else {
			t.Logf("first load: %d chunk requests; reload: none (%s)", first, s)
		}

		// A corrupted cache entry is detected (its SHA-256 no longer matches), fetched again and replaced.
		corrupt := `(async () => {
			const c = await caches.open("webvar-weights-v1");
			const keys = await c.keys();
			const b = new Uint8Array(await (await c.match(keys[0])).arrayBuffer());
			b[b.length >> 1] ^= 0xff;
			await c.put(keys[0], new Response(b));
			return keys.length;
		})()`
		n, err := chromedp.Run(cctx, chromedp.Evaluate[int](corrupt, chromedp.EvalAwaitPromise))
		if err != nil || n == 0 {
			t.Fatalf("corrupting a cache entry: %v (%d entries)", err, n)
		}
		before = chunkReqs.Load()
		if err := chromedp.Do(cctx, clearHTTPCache, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		if !waitAndCompare(t, cctx, nil, want) {
			return
		}
		if got := chunkReqs.Load() - before; got != 1 {
			t.Errorf("after corrupting one of %d cache entries the reload made %d chunk requests, want 1", n, got)
		}
		if s := note(); strings.Contains(s, " 0.0 MB from the network") {
			t.Errorf("after corrupting a cache entry the page says %q: want that chunk from the network", s)
		}

		// The ebiten UI's keyboard re-runs it (cheap on the CPU: var-tiny takes seconds there): the right
		// arrow steps class 1 to 2, the digit 3 selects class 3, G generates. The state is reset first so
		// that the wait cannot see the previous run's "done".
		if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](`document.body.dataset.state = "clicked"`)); err != nil {
			t.Fatal(err)
		}
		pressKey(t, cctx, kb.ArrowRight) // class 2
		pressKey(t, cctx, "3")           // typed digits pick a class by number: 3
		pressKey(t, cctx, "g")
		waitAndCompare(t, cctx, nil, cpuImage(t, 3))
	})

	// The page's controls and the embedding widget, on the CPU fallback (seconds for var-tiny, where
	// SwiftShader takes over a minute per image).
	t.Run("controls", func(t *testing.T) { testControls(ctx, t, chrome, srv.URL) })
	t.Run("embed", func(t *testing.T) { testEmbed(ctx, t, chrome, srv.URL) })
	t.Run("canvas-ui", func(t *testing.T) { testCanvasUI(ctx, t, chrome, srv.URL) })
	// Cancel in the middle of the download, then resume it, on both UIs.
	const greedy = "class=1&cfg=1.5&top_k=1&top_p=0&seed=0"
	t.Run("cancel-download", func(t *testing.T) {
		// model= is the name for the weights parameter: the page takes either.
		testCancelDownload(ctx, t, chrome, srv.URL+"/?ui=html&model=weights/&"+greedy, gate, want, false)
	})
	t.Run("cancel-download-canvas-ui", func(t *testing.T) {
		testCancelDownload(ctx, t, chrome, srv.URL+"/?ui=canvas&"+greedy, gate, want, true)
	})

	// What `go run ./cmd/webvar serve` shows: the embedded default model with its own sampling settings
	// (cfg 3, top-k 100, top-p 0.9 from its metadata; the URL gives only class and seed), sampled with the
	// seeded generator, so the page must draw what the CPU backend draws for the same seed.
	t.Run("default-model", func(t *testing.T) {
		dsrv := httptest.NewServer(newServeHandler(app, fashionvar.FS()))
		defer dsrv.Close()
		b := cpu.New(0)
		p, _, err := (&modelFlags{}).open(ctx, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Generate(ctx, b, varmodel.Request{Labels: []int{7}, CFG: 3, TopK: 100, TopP: 0.9, Seed: 3}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := core.ToImage(res.Images, 0)
		if err != nil {
			t.Fatal(err)
		}
		testPage(ctx, t, chrome, dsrv.URL+"/?class=7&seed=3&autostart=1", true, want, "serve_e2e_default_model.png")
	})
}

// testPage opens page in a fresh Chromium, waits for the generation and compares the canvas with want.
// It returns the browser's context (valid until the test ends) for further steps.
func testPage(ctx context.Context, t *testing.T, chrome, page string, webgpu bool, want *image.NRGBA, shot string) context.Context {
	cctx, dump := openPage(ctx, t, chrome, page, webgpu)
	if !waitAndCompare(t, cctx, dump, want) {
		return nil
	}
	screenshot(t, cctx, shot)
	backend, _ := chromedp.Run(cctx, chromedp.Evaluate[string](`document.getElementById("webvar-backend").textContent`))
	switch {
	case webgpu && !strings.HasPrefix(backend, "WebGPU:"):
		// Not a failure: the fallback is part of the app, and the comparison still holds.
		t.Logf("the page did not run on WebGPU: %s", backend)
	case !webgpu && !strings.Contains(backend, "WebGPU unavailable"):
		t.Errorf("without WebGPU the page says %q, want it to name the fallback", backend)
	case !webgpu && !strings.Contains(backend, "using WebGL2 ("):
		// Chromium's WebGL2 (SwiftShader without a GPU) takes the products: the end-to-end check of wasm/webgl.
		t.Errorf("the fallback page did not use WebGL2: %s", backend)
	}
	return cctx
}

// screenshot saves the page as name under $WEBVAR_ARTIFACTS, if set.
func screenshot(t *testing.T, cctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("WEBVAR_ARTIFACTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(cctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot: %v", err)
	} else if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Errorf("screenshot: %v", err)
	}
}

// openPage opens page in a fresh Chromium profile and returns the browser's context (valid until the
// test ends) and a function describing the page (its status lines and console) for failure messages.
// Console errors and uncaught exceptions, in the page or its same-origin frames, fail the test.
// initScripts run in every document of the page before its own scripts (fault injection: wrapping
// requestDevice, stubbing the Cache API).
func openPage(ctx context.Context, t *testing.T, chrome, page string, webgpu bool, initScripts ...string) (context.Context, func() string) {
	profile := t.TempDir()
	// A window that holds the ebiten UI (892 x 660 logical pixels) at about its own size.
	opts := append(browsertest.AllocatorOptions(chrome, profile, webgpu), chromedp.WindowSize(880, 760))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelA)
	cctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(cancelC)

	// Console errors and uncaught exceptions fail the test: the page must work without complaints.
	var mu sync.Mutex
	var consoleErrs, consoleLog []string
	if err := chromedp.Listen(cctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			consoleErrs = append(consoleErrs, "exception: "+msg)
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range ev.Args {
				if len(a.Value) > 0 {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			line := fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
			consoleLog = append(consoleLog, line)
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				consoleErrs = append(consoleErrs, line)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	for _, src := range initScripts {
		if err := chromedp.Do(cctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: src})
			return err
		})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := chromedp.Run(cctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	dump := func() string {
		// Not under mu: the listener takes it inside chromedp's event loop, which this Run waits on.
		status, _ := chromedp.Run(cctx, chromedp.Evaluate[string](
			`[...document.querySelectorAll(".line")].map(e => e.id + ": " + e.textContent).join("\n")`))
		mu.Lock()
		defer mu.Unlock()
		return status + "\nconsole:\n" + strings.Join(consoleLog, "\n")
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if len(consoleErrs) > 0 {
			t.Errorf("console errors:\n%s", strings.Join(consoleErrs, "\n"))
		}
	})
	return cctx, dump
}

// waitAndCompare waits for the page to finish a generation and compares the canvas with want; it reports
// whether the page got to "done".
func waitAndCompare(t *testing.T, cctx context.Context, dump func() string, want *image.NRGBA) bool {
	t.Helper()
	if dump == nil {
		dump = func() string { return "" }
	}
	start := time.Now()
	state, err := chromedp.Run(cctx, chromedp.Poll[string](
		`["done", "error"].includes(document.body.dataset.state) && document.body.dataset.state`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(120*time.Second)))
	if err != nil {
		t.Errorf("waiting for the page to finish: %v\n%s", err, dump())
		return false
	}
	t.Logf("page done in %.1f s\n%s", time.Since(start).Seconds(), dump())
	if state != "done" {
		msg, _ := chromedp.Run(cctx, chromedp.Evaluate[string](`document.body.dataset.error ?? ""`))
		t.Errorf("page state %q: %s\n%s", state, msg, dump())
		return false
	}
	// The frame after "done" may not be painted yet on the ebiten canvas: a few tries.
	maxDiff := -1
	for try := 0; try < 10 && (maxDiff < 0 || maxDiff > 2); try++ {
		if try > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		got, err := canvasImage(cctx, want.Rect.Dx(), want.Rect.Dy())
		if err != nil {
			t.Errorf("reading the canvas: %v", err)
			return true
		}
		maxDiff = 0
		for i, v := range got.Pix {
			maxDiff = max(maxDiff, int(v)-int(want.Pix[i]), int(want.Pix[i])-int(v))
		}
	}
	if maxDiff > 2 {
		t.Errorf("canvas differs from the CPU image by %d levels (want <= 2)", maxDiff)
		screenshot(t, cctx, "serve_e2e_mismatch.png")
	}
	t.Logf("canvas vs CPU image: max difference %d levels", maxDiff)
	return true
}

// canvasImage reads the w x h image the page shows: the HTML page's canvas pixels, or on the ebiten UI
// (its canvas scaled to the window) the centre of each generated pixel's block in a screenshot, at
// uistate.ImageRect inside the logical uistate.Width x uistate.Height screen.
func canvasImage(cctx context.Context, w, h int) (*image.NRGBA, error) {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	html, err := chromedp.Run(cctx, chromedp.Evaluate[bool](`document.getElementById("webvar-canvas").offsetParent !== null`))
	if err != nil {
		return nil, err
	}
	if html {
		px, err := chromedp.Run(cctx, chromedp.Evaluate[[]int](`(() => {
			const c = document.getElementById("webvar-canvas");
			return [c.width, c.height, ...c.getContext("2d").getImageData(0, 0, c.width, c.height).data];
		})()`))
		if err != nil {
			return nil, err
		}
		if px[0] != w || px[1] != h {
			return nil, fmt.Errorf("the canvas is %dx%d, want %dx%d", px[0], px[1], w, h)
		}
		for i, v := range px[2:] {
			img.Pix[i] = uint8(v)
		}
		return img, nil
	}
	box, err := chromedp.Run(cctx, chromedp.Evaluate[[]float64](`(() => {
		const c = [...document.querySelectorAll("canvas")].find(e => e.id !== "webvar-canvas" && e.offsetParent !== null);
		if (!c) return [];
		const r = c.getBoundingClientRect();
		return [r.left, r.top, r.width, r.height, window.devicePixelRatio];
	})()`))
	if err != nil {
		return nil, err
	}
	if len(box) != 5 {
		return nil, errors.New("neither the HTML canvas nor an ebiten canvas is shown")
	}
	shot, err := chromedp.Run(cctx, chromedp.FullScreenshot(100))
	if err != nil {
		return nil, err
	}
	sc, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		return nil, err
	}
	// ebiten fits the logical screen into its canvas, keeping the aspect ratio, centred.
	s := min(box[2]/uistate.Width, box[3]/uistate.Height)
	ox := box[0] + (box[2]-s*uistate.Width)/2
	oy := box[1] + (box[3]-s*uistate.Height)/2
	r, scale := uistate.ImageRect(w, h)
	dpr := box[4]
	for y := range h {
		for x := range w {
			lx := float64(r.Min.X) + (float64(x)+0.5)*float64(scale)
			ly := float64(r.Min.Y) + (float64(y)+0.5)*float64(scale)
			c := color.NRGBAModel.Convert(sc.At(int((ox+lx*s)*dpr), int((oy+ly*s)*dpr))).(color.NRGBA)
			img.SetNRGBA(x, y, c)
		}
	}
	return img, nil
}

// cpuImage generates the page's request (cfg 1.5, greedy, seed 0) for class on the CPU backend from the
// original checkpoints; class 1 is image 0 of the golden ar1 run.
func cpuImage(t *testing.T, class int) *image.NRGBA {
	t.Helper()
	b := cpu.New(0)
	p, err := openPipeline(testutil.VarTiny("var.pth"), testutil.VarTiny("vae.pth"), b, varmodel.Options{PatchNums: []int{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Generate(context.Background(), b, varmodel.Request{Labels: []int{class}, CFG: 1.5, TopK: 1, Seed: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := core.ToImage(res.Images, 0)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
