package main

import (
	"context"
	"fmt"
	"image"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/webvar/webvar/internal/browsertest"
	"github.com/webvar/webvar/internal/faulthttp"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/weights"
)

// faultSite is the app, a tiny random VAR (the default, at weights/) and one tiny model of every other
// family (at models/NAME/) served with a fault injector in front of the weights, plus hostile manifests
// made from each model's.
type faultSite struct {
	url    string
	faults *faulthttp.Injector
	models map[string]servedModel // by name: "tiny" and the families'
}

// newFaultSite converts a tiny random VAR (in 64 KiB chunks: 35 of them) and the other families'
// tiny fixtures (in 512 KiB chunks), builds the app and serves them; want is the tiny VAR's image of the
// tests' request.
func newFaultSite(ctx context.Context, t *testing.T) (site *faultSite, want *image.NRGBA) {
	t.Helper()
	wdir, want := tinyVAR(t, 64<<10)
	app := t.TempDir()
	if err := buildApp(ctx, app, io.Discard); err != nil {
		t.Fatal(err)
	}
	site = &faultSite{models: map[string]servedModel{}}
	models := append([]servedModel{{Name: "tiny", FS: os.DirFS(wdir)}}, familyModels(t, "-chunk-kib", "512")...)
	hostile := map[string][]byte{}
	for _, m := range models {
		site.models[m.Name] = m
		for k, v := range hostileManifests(t, m.FS) {
			hostile[m.Name+"/"+k] = v
		}
	}
	h := newServeHandlerModels(app, models)
	site.faults = faulthttp.New(h)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/two-widgets.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, twoWidgets)
		case r.URL.Path == "/family-widgets.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, familyWidgets)
		case strings.HasPrefix(r.URL.Path, "/hostile/"):
			if body, ok := hostile[strings.TrimPrefix(r.URL.Path, "/hostile/")]; ok {
				w.Write(body)
				return
			}
			http.NotFound(w, r)
		case strings.HasPrefix(r.URL.Path, "/weights/") || strings.HasPrefix(r.URL.Path, "/models/"):
			site.faults.ServeHTTP(w, r)
		default:
			h.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	site.url = srv.URL
	return site, want
}

// hostileManifests are manifests a hostile or broken server might send in place of the model's, by
// path: absurd sizes and counts, and bytes that are not msgpack at all.
func hostileManifests(t *testing.T, fsys fs.FS) map[string][]byte {
	t.Helper()
	data, err := fs.ReadFile(fsys, weights.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := msgpack.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, err := msgpack.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return map[string][]byte{
		"huge-chunk/" + weights.ManifestFile: edit(func(m map[string]any) {
			m["chunks"].([]any)[0].(map[string]any)["size"] = int64(1) << 50 // a petabyte chunk
		}),
		"many-chunks/" + weights.ManifestFile: edit(func(m map[string]any) {
			cs := m["chunks"].([]any)
			for len(cs) < 5_000_000 {
				cs = append(cs, cs...)
			}
			m["chunks"] = cs
		}),
		"huge-tensor/" + weights.ManifestFile: edit(func(m map[string]any) {
			m["tensors"].([]any)[0].(map[string]any)["shape"] = []any{1 << 30, 1 << 30}
		}),
		"not-msgpack/" + weights.ManifestFile: []byte("<!doctype html><title>404</title>this is not a weights manifest\n"),
	}
}

// faultTarget is one served model the loader faults are tried on: its weights' URL path, a page that
// generates with it on the CPU backend (without autostart), and a check that the page finished the run
// with the model's right result.
type faultTarget struct {
	name   string
	prefix string // "/weights/" or "/models/NAME/"
	page   string
	check  func(t *testing.T, cctx context.Context, dump func() string) bool
}

// tinyTarget is the tiny VAR at weights/ (the page's default), checked by its image.
func (s *faultSite) tinyTarget(want *image.NRGBA) faultTarget {
	return faultTarget{name: "tiny", prefix: "/weights/",
		page: s.url + "/?ui=html&backend=cpu&class=1&cfg=1.5&top_k=1&top_p=0&seed=0",
		check: func(t *testing.T, cctx context.Context, dump func() string) bool {
			return waitAndCompare(t, cctx, dump, want)
		}}
}

// resultJS is a family-neutral record of the last run: its tokens (VAR, FlexVAR, RQ) and latents (MAR).
const resultJS = `(document.body.dataset.tokens ?? "") + "|" + (document.body.dataset.latents ?? "")`

// familyTarget is the model NAME at models/NAME/, checked by its tokens or latents, which a first run on
// a network without faults records.
func (s *faultSite) familyTarget(ctx context.Context, t *testing.T, chrome, name string) faultTarget {
	t.Helper()
	page := s.url + "/?ui=html&backend=cpu&class=1&seed=3&top_k=1&model=models/" + name + "/"
	s.faults.Reset()
	cctx, dump := openPage(ctx, t, chrome, page+"&autostart=1", false)
	waitState(t, cctx, dump, "done")
	want := evalJS[string](t, cctx, resultJS)
	if len(want) < 10 {
		t.Fatalf("%s: the run recorded %q: no tokens or latents", name, want)
	}
	return faultTarget{name: name, prefix: "/models/" + name + "/", page: page,
		check: func(t *testing.T, cctx context.Context, dump func() string) bool {
			t.Helper()
			if _, err := chromedp.Run(cctx, chromedp.Poll[bool](`["done", "error"].includes(document.body.dataset.state)`,
				chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(120*time.Second))); err != nil {
				t.Errorf("waiting for the run: %v\n%s", err, dump())
				return false
			}
			if st := evalJS[string](t, cctx, `document.body.dataset.state`); st != "done" {
				t.Errorf("state %s: %s\n%s", st, evalJS[string](t, cctx, `document.body.dataset.error ?? ""`), dump())
				return false
			}
			if got := evalJS[string](t, cctx, resultJS); got != want {
				t.Errorf("the run made %.200q, without faults %.200q", got, want)
				return false
			}
			return true
		}}
}

// The app under faults from outside it, each injected where a user meets it: a network that drops,
// errors or corrupts chunks, a browser that will not store them, hostile weights URLs, a GPU device
// that is destroyed. Each case checks the app's answer: a named message, recovery, nothing lost. The
// loader's cases run on every family's model, the GPU cases on each family on WebGPU.
func TestFaultsInChromium(t *testing.T) {
	chrome := browsertest.RequireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	site, want := newFaultSite(ctx, t)
	const greedy = "class=1&cfg=1.5&top_k=1&top_p=0&seed=0"

	// The loader's faults on the CPU backend (a fraction of a second per image), for every family.
	for _, name := range []string{"tiny", "flexvar-tiny", "mar-tiny", "rq-tiny"} {
		t.Run(name, func(t *testing.T) {
			target := site.tinyTarget(want)
			if name != "tiny" {
				target = site.familyTarget(ctx, t, chrome, name)
			}
			t.Run("network", func(t *testing.T) { testNetworkFaults(ctx, t, chrome, site, target) })
			t.Run("storage", func(t *testing.T) { testStorageFaults(ctx, t, chrome, site, target) })
			t.Run("hostile", func(t *testing.T) { testHostileWeights(ctx, t, chrome, site, target) })
			t.Run("concurrency", func(t *testing.T) { testLoadCancelAndRepeat(ctx, t, chrome, site, target) })
		})
	}
	t.Run("device-lost", func(t *testing.T) {
		testDeviceLost(ctx, t, chrome, site, site.url+"/?ui=html&backend=webgpu&autostart=1&"+greedy, want)
	})
	t.Run("device-lost-families", func(t *testing.T) { testDeviceLostFamilies(ctx, t, chrome, site) })
	t.Run("two-widgets", func(t *testing.T) { testWidgets(ctx, t, chrome, site, "/two-widgets.html", `scale [1-2]\/`) })
	t.Run("family-widgets", func(t *testing.T) {
		testWidgets(ctx, t, chrome, site, "/family-widgets.html", `(step|iteration|position) [1-9][0-9]*\/`)
	})
	t.Run("device-lost-canvas-ui", func(t *testing.T) {
		testDeviceLostCanvasUI(ctx, t, chrome, site, site.url+"/?ui=canvas&backend=webgpu&autostart=1&"+greedy, want)
	})
}

// evalJS runs a JavaScript expression in the page and fails the test on an error.
func evalJS[T any](t *testing.T, cctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(cctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// chunks lists the model's chunk files.
func (s *faultSite) chunks(t *testing.T, model string) []string {
	t.Helper()
	m, ok := s.models[model]
	if !ok {
		t.Fatalf("no model %q served", model)
	}
	entries, err := fs.ReadDir(m.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "chunk-") {
			names = append(names, e.Name())
		}
	}
	return names
}

// chunkRequests is how many requests each chunk of the model at prefix got so far.
func (s *faultSite) chunkRequests(t *testing.T, target faultTarget) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, c := range s.chunks(t, target.name) {
		m[c] = s.faults.Requests(target.prefix + c)
	}
	return m
}

// downloads is how many chunk requests the model got so far.
func (s *faultSite) downloads(t *testing.T, model string) int {
	t.Helper()
	prefix := "/models/" + model + "/"
	if model == "tiny" {
		prefix = "/weights/"
	}
	return total(s.chunkRequests(t, faultTarget{name: model, prefix: prefix}))
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Network: a connection dropped in the middle of a chunk, a 500 and a 404 for one chunk each, and a
// chunk served with wrong bytes are retried with backoff and the page loads and draws the right result;
// a chunk that keeps failing is named after the last retry (state "stopped"), and Generate resumes from
// the verified chunks (none fetched twice) once the server recovers.
func testNetworkFaults(ctx context.Context, t *testing.T, chrome string, site *faultSite, target faultTarget) {
	chunks := site.chunks(t, target.name)
	if len(chunks) < 10 {
		t.Fatalf("%s has %d chunks: the test needs 10", target.name, len(chunks))
	}
	site.faults.Reset()
	faulty := []string{chunks[1], chunks[3], chunks[5], chunks[7]}
	for i, f := range []faulthttp.Fault{faulthttp.Drop, faulthttp.Status500, faulthttp.Status404, faulthttp.Corrupt} {
		site.faults.Queue(target.prefix+faulty[i], f)
	}
	cctx, dump := openPage(ctx, t, chrome, target.page+"&autostart=1", false)
	if !target.check(t, cctx, dump) {
		return
	}
	retries := evalJS[string](t, cctx, `document.body.dataset.retries ?? "0"`)
	if retries != "4" || site.faults.Injected() != 4 {
		t.Errorf("4 faults injected (%d taken): the page retried %s times, want 4\n%s", site.faults.Injected(), retries, dump())
	}
	for _, c := range faulty {
		if n := site.faults.Requests(target.prefix + c); n != 2 {
			t.Errorf("%s requested %d times, want 2 (the fault and the retry)", c, n)
		}
	}

	// A chunk that always fails: named after the last retry, then resumed.
	site.faults.Reset()
	bad := chunks[9]
	site.faults.Always(target.prefix+bad, faulthttp.Status500)
	cctx, dump = openPage(ctx, t, chrome, target.page+"&autostart=1", false) // a fresh profile: nothing cached
	waitState(t, cctx, dump, "stopped")
	msg := evalJS[string](t, cctx, `document.body.dataset.error ?? ""`)
	status := evalJS[string](t, cctx, `document.getElementById("webvar-status").textContent`)
	if !strings.Contains(msg, bad) || !strings.Contains(msg, "gave up after 5 tries") || !strings.Contains(status, "try again") {
		t.Errorf("after %s failed for good: error %q, status %q: want the chunk named, the tries counted and a way on", bad, msg, status)
	}
	if n := site.faults.Requests(target.prefix + bad); n != 5 {
		t.Errorf("%s requested %d times, want 5 tries", bad, n)
	}
	before := site.chunkRequests(t, target)
	site.faults.Reset()
	evalJS[any](t, cctx, `document.body.dataset.state = "clicked"; document.getElementById("webvar-generate").click()`)
	if !target.check(t, cctx, dump) {
		return
	}
	after := site.chunkRequests(t, target)
	for name, n := range after {
		if n > 1 || n == 1 && before[name] > 0 && name != bad {
			t.Errorf("resuming requested %s %d times (before: %d): want only the chunks not yet verified", name, n, before[name])
		}
	}
	t.Logf("%s: failing %s: %d chunk requests before giving up; the resume fetched %d of %d chunks",
		target.name, bad, total(before), total(after), len(chunks))
}

// Concurrency on the CPU backend: Cancel while the download is retrying a failing chunk stops it (state
// "cancelled"), and Generate afterwards resumes it and makes the right result; then Generate pressed
// three times during a run makes one run with the same result.
func testLoadCancelAndRepeat(ctx context.Context, t *testing.T, chrome string, site *faultSite, target faultTarget) {
	site.faults.Reset()
	chunks := site.chunks(t, target.name)
	site.faults.Always(target.prefix+chunks[len(chunks)/2], faulthttp.Status500)
	cctx, dump := openPage(ctx, t, chrome, target.page+"&autostart=1", false)
	if _, err := chromedp.Run(cctx, chromedp.Poll[bool](`document.body.dataset.state === "loading" && (document.body.dataset.retries ?? "0") !== "0"`,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatalf("waiting for a retry during the download: %v\n%s", err, dump())
	}
	evalJS[any](t, cctx, `document.getElementById("webvar-cancel").click()`)
	waitState(t, cctx, dump, "cancelled")
	site.faults.Reset()
	evalJS[any](t, cctx, `document.body.dataset.state = "clicked"; document.getElementById("webvar-generate").click()`)
	if !target.check(t, cctx, dump) {
		return
	}
	runs := `window.__runs ?? 0`
	evalJS[any](t, cctx, `window.__runs = 0; new MutationObserver(() => { if (document.body.dataset.state === "generating") window.__runs++; })
		.observe(document.body, {attributes: true, attributeFilter: ["data-state"]});
		document.body.dataset.state = "clicked";
		for (let i = 0; i < 3; i++) document.getElementById("webvar-generate").click();`)
	if !target.check(t, cctx, dump) {
		return
	}
	if n := evalJS[int](t, cctx, runs); n != 1 {
		t.Errorf("Generate pressed 3 times during a run: %d runs, want 1", n)
	}
}

// Storage: the Cache API missing, denied, or over quota: the model still loads and draws, the page says
// it will not be cached, and no error state.
func testStorageFaults(ctx context.Context, t *testing.T, chrome string, site *faultSite, target faultTarget) {
	for _, c := range []struct{ name, script, cache, says string }{
		{"missing", `delete window.caches; Object.defineProperty(window, "caches", {value: undefined});`, "none", "no browser cache"},
		{"denied", `window.caches.open = () => Promise.reject(new DOMException("The operation is insecure.", "SecurityError"));`,
			"none", "SecurityError"},
		{"quota", `Cache.prototype.put = function() { return Promise.reject(new DOMException("Quota exceeded.", "QuotaExceededError")); };`,
			"refused", "QuotaExceededError"},
	} {
		t.Run(c.name, func(t *testing.T) {
			site.faults.Reset()
			cctx, dump := openPage(ctx, t, chrome, target.page+"&autostart=1", false, c.script)
			if !target.check(t, cctx, dump) {
				return
			}
			cache := evalJS[string](t, cctx, `document.body.dataset.cache ?? ""`)
			note := evalJS[string](t, cctx, `document.getElementById("webvar-model").textContent`)
			if cache != c.cache || !strings.Contains(note, "will not be cached") || !strings.Contains(note, c.says) {
				t.Errorf("dataset.cache %q (want %q), model line %q: want it to say the weights will not be cached and why (%s)",
					cache, c.cache, note, c.says)
			}
		})
	}
}

// Hostile weights URLs in place of the model's: absurd sizes or counts in its manifest, a manifest that
// is not msgpack, and a cross-origin server without CORS: a named error in the page, and a page that
// still answers.
func testHostileWeights(ctx context.Context, t *testing.T, chrome string, site *faultSite, target faultTarget) {
	// A second origin (another port) serving the same weights without CORS headers.
	other := httptest.NewServer(http.FileServerFS(site.models[target.name].FS))
	defer other.Close()
	hostile := "hostile/" + target.name + "/"
	for _, c := range []struct{ name, weights, state, says string }{
		{"huge-chunk", hostile + "huge-chunk/", "error", "malformed weights"},
		{"many-chunks", hostile + "many-chunks/", "error", "malformed weights"},
		{"huge-tensor", hostile + "huge-tensor/", "error", "malformed weights"},
		{"not-msgpack", hostile + "not-msgpack/", "error", "malformed weights"},
		{"cross-origin", other.URL + "/", "stopped", "must allow it with CORS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			page := site.url + "/?ui=html&backend=cpu&weights=" + c.weights
			start := time.Now()
			cctx, dump := openPage(ctx, t, chrome, page, false)
			waitState(t, cctx, dump, c.state)
			msg := evalJS[string](t, cctx, `document.body.dataset.error ?? ""`)
			if !strings.Contains(msg, c.says) || !strings.Contains(msg, strings.TrimSuffix(c.weights, "/")) {
				t.Errorf("error %q: want it to say %q and name the weights URL", msg, c.says)
			}
			// The tab lives: the page still evaluates script.
			if v := evalJS[int](t, cctx, `1 + 1`); v != 2 {
				t.Errorf("the page does not answer")
			}
			t.Logf("%s: %q after %.1f s", c.name, msg, time.Since(start).Seconds())
		})
	}
}

// gpuAccounting is the script that reads the app's GPU buffer accounting, "live/pooled/buffers", from the
// document doc (a widget's frame document, or the page's).
func gpuAccounting(doc string) string {
	return `["gpuLive", "gpuPooled", "gpuBuffers"].map(k => ` + doc + `.body.dataset[k]).join("/")`
}

// statusJS is the page's status line (the step in progress: "scale 2/3", "iteration 1/2", ...).
const statusJS = `document.getElementById("webvar-status").textContent`

// cancelDuring presses Generate, waits until the script midRun is true (a step in progress), presses
// Cancel and waits until the page is ready (cancelled) or done (the run ended first); it returns that
// state. The page must not get stuck.
func cancelDuring(t *testing.T, cctx context.Context, dump func() string, midRun, what string) string {
	t.Helper()
	evalJS[any](t, cctx, `document.body.dataset.state = "clicked"; document.getElementById("webvar-generate").click()`)
	if _, err := chromedp.Run(cctx, chromedp.Poll[bool](midRun,
		chromedp.WithPollingInterval(5*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatalf("waiting for %s: %v\n%s", what, err, dump())
	}
	evalJS[any](t, cctx, `document.getElementById("webvar-cancel").click()`)
	if _, err := chromedp.Run(cctx, chromedp.Poll[bool](`["ready", "done"].includes(document.body.dataset.state)`,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatalf("Cancel during %s: the page is stuck: %v\n%s", what, err, dump())
	}
	return evalJS[string](t, cctx, `document.body.dataset.state`)
}

// captureDevices records every GPUDevice the page gets, so that the test can destroy it from outside.
const captureDevices = `(() => {
	window.__gpuDevices = [];
	if (!self.GPUAdapter) return;
	const request = GPUAdapter.prototype.requestDevice;
	GPUAdapter.prototype.requestDevice = async function(...args) {
		const d = await request.apply(this, args);
		window.__gpuDevices.push(d);
		return d;
	};
})();`

// GPU device lost between generations and in the middle of one: the page names the loss, opens a new
// device, downloads nothing again, and the next Generate draws the same image for the same seed.
func testDeviceLost(ctx context.Context, t *testing.T, chrome string, site *faultSite, page string, want *image.NRGBA) {
	site.faults.Reset()
	cctx, dump := openPage(ctx, t, chrome, page, true, captureDevices)
	if !waitAndCompare(t, cctx, dump, want) {
		return
	}
	if b := evalJS[string](t, cctx, `document.getElementById("webvar-backend").textContent`); !strings.HasPrefix(b, "WebGPU") {
		browsertest.NoWebGPU(t, b)
	}
	downloads := site.downloads(t, "tiny")
	gpu := func() string {
		return evalJS[string](t, cctx, gpuAccounting("document"))
	}
	idle := gpu()
	generate := func() {
		t.Helper()
		evalJS[any](t, cctx, `document.body.dataset.state = "clicked"; document.getElementById("webvar-generate").click()`)
	}
	recovered := func(n int, when string) {
		t.Helper()
		start := time.Now()
		_, err := chromedp.Run(cctx, chromedp.Poll[bool](fmt.Sprintf(
			`window.__gpuDevices.length === %d && document.body.dataset.state === "ready" && !!document.body.dataset.deviceLost`, n),
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
		if err != nil {
			t.Fatalf("device destroyed %s: no recovery: %v\n%s", when, err, dump())
		}
		status := evalJS[string](t, cctx, `document.getElementById("webvar-status").textContent`)
		if !strings.Contains(status, "GPU device lost") {
			t.Errorf("device destroyed %s: status %q does not name the loss", when, status)
		}
		t.Logf("device destroyed %s: recovered in %.1f s: %s", when, time.Since(start).Seconds(), status)
		generate()
		if !waitAndCompare(t, cctx, dump, want) {
			t.FailNow()
		}
		if n := site.downloads(t, "tiny"); n != downloads {
			t.Errorf("device destroyed %s: %d chunk requests after the first load's %d: the weights were fetched again", when, n, downloads)
		}
		if g := gpu(); g != idle {
			t.Errorf("device destroyed %s: GPU accounting %s after the next run, want %s as before", when, g, idle)
		}
	}

	// Cancel in the middle of a run: the buffers of the cancelled run go back (the weights' stay).
	if st := cancelDuring(t, cctx, dump, `/scale [1-2]\//.test(`+statusJS+`)`, "a scale"); st != "ready" {
		t.Fatalf("Cancel during a scale: state %s, want ready\n%s", st, dump())
	}
	if g := gpu(); strings.Split(g, "/")[0] != strings.Split(idle, "/")[0] {
		t.Errorf("after Cancel during a scale: GPU accounting live/pooled/buffers %s, want live as at idle (%s)", g, idle)
	} else {
		t.Logf("after Cancel during a scale: GPU accounting %s (idle %s)", g, idle)
	}
	// Cancel during the last scale, whose time is mostly the final decode (the tiny model's transformer is
	// one block; its VQVAE decoder tens of dispatches): the run ends either cancelled or done, never stuck,
	// with the same live GPU memory as at idle, and the next run draws the same image.
	outcome := cancelDuring(t, cctx, dump, `/scale 2\/3/.test(`+statusJS+`)`, "the decode")
	if g := gpu(); strings.Split(g, "/")[0] != strings.Split(idle, "/")[0] {
		t.Errorf("after Cancel during the decode (%s): GPU accounting live/pooled/buffers %s, want live as at idle (%s)", outcome, g, idle)
	} else {
		t.Logf("after Cancel during the decode: state %s, GPU accounting %s (idle %s)", outcome, g, idle)
	}
	generate()
	if !waitAndCompare(t, cctx, dump, want) {
		t.FailNow()
	}

	evalJS[any](t, cctx, `window.__gpuDevices.at(-1).destroy()`)
	recovered(2, "between generations")

	generate()
	if _, err := chromedp.Run(cctx, chromedp.Poll[bool](`document.body.dataset.state === "generating"`,
		chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	evalJS[any](t, cctx, `delete document.body.dataset.deviceLost; window.__gpuDevices.at(-1).destroy()`)
	recovered(3, "mid-generation")
	t.Logf("GPU accounting live/pooled/buffers at idle: %s", strconv.Quote(idle))
}

// The same on the canvas UI (the demo's default): a device destroyed between generations is named, a new
// one opened with the weights kept, and G draws the same image.
func testDeviceLostCanvasUI(ctx context.Context, t *testing.T, chrome string, site *faultSite, page string, want *image.NRGBA) {
	site.faults.Reset()
	cctx, dump := openPage(ctx, t, chrome, page, true, captureDevices)
	if !waitAndCompare(t, cctx, dump, want) {
		return
	}
	if n := evalJS[int](t, cctx, `window.__gpuDevices.length`); n != 1 {
		browsertest.NoWebGPU(t, fmt.Sprintf("%d devices", n))
	}
	downloads := site.downloads(t, "tiny")
	evalJS[any](t, cctx, `window.__gpuDevices.at(-1).destroy()`)
	start := time.Now()
	if _, err := chromedp.Run(cctx, chromedp.Poll[bool](
		`window.__gpuDevices.length === 2 && document.body.dataset.state === "ready" && !!document.body.dataset.deviceLost`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatalf("no recovery: %v\n%s", err, dump())
	}
	t.Logf("recovered in %.1f s: %s", time.Since(start).Seconds(), evalJS[string](t, cctx, `document.body.dataset.deviceLost`))
	evalJS[any](t, cctx, `document.body.dataset.state = "clicked"`)
	pressKey(t, cctx, "g")
	if !waitAndCompare(t, cctx, dump, want) {
		return
	}
	if n := site.downloads(t, "tiny"); n != downloads {
		t.Errorf("%d chunk requests after the first load's %d: the weights were fetched again", n, downloads)
	}
}

// familyModels converts the other families' fixtures (small settings for SwiftShader) for the model menu,
// with convertArgs added to each convert command.
func familyModels(t *testing.T, convertArgs ...string) []servedModel {
	t.Helper()
	var ms []servedModel
	for _, c := range []struct {
		name string
		args []string
	}{
		{"flexvar-tiny", []string{"-var", testutil.FlexVARTiny("var.pth"), "-vae", testutil.FlexVARTiny("vae.pth"), "-patch-nums", "1,2,3"}},
		{"mar-tiny", []string{"-var", testutil.MARTiny("mar.pth"), "-vae", testutil.MARTiny("vae.pth"), "-heads", "4",
			"-set", "iters=2", "-set", "diffusion-steps=3", "-vae-quant", "f32"}},
		{"rq-tiny", []string{"-rq", filepath.Join(testutil.Root(), "testdata", "rq-tiny"), "-vae-quant", "f32"}},
	} {
		dir := filepath.Join(t.TempDir(), c.name)
		args := append(append([]string{"convert"}, c.args...), "-quant", "f32", "-out", dir, "-verify", "0")
		args = append(args, convertArgs...)
		if rc, _, stderr := runCLI(t, args...); rc != 0 {
			t.Fatalf("convert %s: exit %d: %s", c.name, rc, stderr)
		}
		ms = append(ms, servedModel{Name: c.name, FS: os.DirFS(dir)})
	}
	return ms
}

// Every other family on WebGPU: a device destroyed between generations is recovered from with the weights
// kept, and the next Generate makes the same tokens (and MAR's the same latents) as before the loss; then
// Cancel after a first step leaves no buffers behind.
func testDeviceLostFamilies(ctx context.Context, t *testing.T, chrome string, site *faultSite) {
	for _, name := range []string{"flexvar-tiny", "mar-tiny", "rq-tiny"} {
		t.Run(name, func(t *testing.T) {
			site.faults.Reset()
			page := site.url + "/?ui=html&backend=webgpu&autostart=1&class=1&seed=3&top_k=1&model=models/" + name + "/"
			cctx, dump := openPage(ctx, t, chrome, page, true, captureDevices)
			waitState(t, cctx, dump, "done")
			if n := evalJS[int](t, cctx, `window.__gpuDevices.length`); n != 1 {
				browsertest.NoWebGPU(t, fmt.Sprintf("%d devices", n))
			}
			const result = `(document.body.dataset.tokens ?? "") + "|" + (document.body.dataset.latents ?? "")`
			before := evalJS[string](t, cctx, result)
			downloads := site.downloads(t, name)
			evalJS[any](t, cctx, `window.__gpuDevices.at(-1).destroy()`)
			if _, err := chromedp.Run(cctx, chromedp.Poll[bool](
				`window.__gpuDevices.length === 2 && document.body.dataset.state === "ready" && !!document.body.dataset.deviceLost`,
				chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))); err != nil {
				t.Fatalf("no recovery: %v\n%s", err, dump())
			}
			evalJS[any](t, cctx, `document.body.dataset.state = "clicked"; delete document.body.dataset.tokens;
				document.getElementById("webvar-generate").click()`)
			waitState(t, cctx, dump, "done")
			if after := evalJS[string](t, cctx, result); after != before || len(before) < 10 {
				t.Errorf("after the loss the run made %.200q, before it %.200q", after, before)
			}
			if n := site.downloads(t, name); n != downloads {
				t.Errorf("%d chunk requests after the first load's %d: the weights were fetched again", n, downloads)
			}
			// Cancel after the first step: the run ends cancelled (or done, if it finished first), never
			// stuck, with the GPU accounting back at its level after a whole run.
			gpu := gpuAccounting("document")
			idle := evalJS[string](t, cctx, gpu)
			st := cancelDuring(t, cctx, dump, `/(step|iteration|position) 1\//.test(`+statusJS+`) || document.body.dataset.state === "done"`,
				"the first step")
			if g := evalJS[string](t, cctx, gpu); strings.Split(g, "/")[0] != strings.Split(idle, "/")[0] {
				t.Errorf("after Cancel (%s): GPU accounting live/pooled/buffers %s, want live as after a run (%s)", st, g, idle)
			} else {
				t.Logf("after Cancel: state %s, GPU accounting %s (after a run %s)", st, g, idle)
			}
		})
	}
}

// familyWidgets is a host page with a widget of each other family on WebGPU, each its own app, generating
// at once.
const familyWidgets = `<!doctype html><title>family widgets</title>
<script src="/webvar-widget.js"></script>
<div data-webvar data-model="/models/flexvar-tiny/" data-class="1" data-seed="3" data-top-k="1" data-backend="webgpu" data-autostart data-width="320px" data-height="360px"></div>
<div data-webvar data-model="/models/mar-tiny/" data-class="2" data-seed="3" data-backend="webgpu" data-autostart data-width="320px" data-height="360px"></div>
<div data-webvar data-model="/models/rq-tiny/" data-class="4" data-seed="3" data-top-k="1" data-backend="webgpu" data-autostart data-width="320px" data-height="360px"></div>`

// twoWidgets is a host page with two widgets on WebGPU, each its own app, generating at once.
const twoWidgets = `<!doctype html><title>two widgets</title>
<script src="/webvar-widget.js"></script>
<div data-webvar data-class="1" data-seed="0" data-cfg="1.5" data-top-k="1" data-top-p="0" data-backend="webgpu" data-autostart data-width="320px" data-height="360px"></div>
<div data-webvar data-class="4" data-seed="5" data-cfg="1.5" data-top-k="1" data-top-p="0" data-backend="webgpu" data-autostart data-width="320px" data-height="360px"></div>`

// Widgets on one page (page: two of the tiny VAR, or one of each other family) generating at once,
// Generate pressed repeatedly in each during a run, then Cancel in each mid-run (when its status matches
// midRun): no deadlock, each widget makes the same tokens (MAR: latents) every time, and each app's GPU
// buffer accounting returns to its idle level.
func testWidgets(ctx context.Context, t *testing.T, chrome string, site *faultSite, page, midRun string) {
	site.faults.Reset()
	cctx, dump := openPage(ctx, t, chrome, site.url+page, true)
	const states = `[...document.querySelectorAll("[data-webvar]")].map(e => e.dataset.state).join(" ")`
	widgets := evalJS[int](t, cctx, `document.querySelectorAll("[data-webvar]").length`)
	waitAll := func(want, what string) {
		t.Helper()
		all := strings.TrimSpace(strings.Repeat(want+" ", widgets))
		js := fmt.Sprintf(`(() => { const s = %s; return (s === %q || s.includes("error")) && s; })()`, states, all)
		got, err := chromedp.Run(cctx, chromedp.Poll[string](js,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(3*time.Minute)))
		if err != nil {
			t.Fatalf("%s: waiting for every widget to be %s: %v (states %q)\n%s", what, want, err, evalJS[string](t, cctx, states), dump())
		}
		if got != all {
			t.Fatalf("%s: widget states %q\n%s", what, got, dump())
		}
	}
	// frames evaluates expr in each widget's app document (d) and joins the answers with " | ".
	frames := func(expr string) string {
		t.Helper()
		return evalJS[string](t, cctx, `[...document.querySelectorAll("[data-webvar] iframe")].map(f => {
			const d = f.contentDocument; return String(`+expr+`); }).join(" | ")`)
	}
	accounting := gpuAccounting("d")
	const live = `d.body.dataset.gpuLive`
	click := func(times int) {
		t.Helper()
		evalJS[any](t, cctx, fmt.Sprintf(`[...document.querySelectorAll("[data-webvar]")].forEach(e => e.dataset.state = "clicked");
			[...document.querySelectorAll("[data-webvar] iframe")].forEach(f => {
				for (let i = 0; i < %d; i++) f.contentDocument.getElementById("webvar-generate").click(); })`, times))
	}

	waitAll("done", "first runs")
	if b := frames(`d.getElementById("webvar-backend").textContent`); strings.Count(b, "WebGPU:") != widgets {
		browsertest.NoWebGPU(t, b)
	}
	const result = `(d.body.dataset.tokens ?? "") + "|" + (d.body.dataset.latents ?? "")`
	tokens := frames(result)
	idleLive := frames(live)
	t.Logf("%s: GPU accounting live/pooled/buffers after the first runs: %s", page, frames(accounting))

	// All at once, Generate pressed three times in each during the run: one run each, the same tokens.
	click(3)
	waitAll("done", "runs at once")
	if got := frames(result); got != tokens {
		t.Errorf("runs at once made tokens %.200q, the first runs %.200q", got, tokens)
	}
	if got := frames(live); got != idleLive {
		t.Errorf("after the runs at once: live GPU memory %s, want %s", got, idleLive)
	}

	// Cancel in each during a run (each widget's Cancel pressed as soon as its status shows a step in
	// progress): all back to ready (or done, where the run ended first), the accounting at its idle level,
	// then the same tokens again.
	evalJS[any](t, cctx, `window.__cancelled = 0; [...document.querySelectorAll("[data-webvar] iframe")].forEach(f => {
		const d = f.contentDocument, id = setInterval(() => {
			if (/`+midRun+`/.test(d.getElementById("webvar-status").textContent)) {
				d.getElementById("webvar-cancel").click(); clearInterval(id); window.__cancelled++;
			}
		}, 2);
	})`)
	click(1)
	if _, err := chromedp.Run(cctx, chromedp.Poll[bool](fmt.Sprintf(`window.__cancelled === %d && [...document.querySelectorAll("[data-webvar] iframe")].every(f =>
			["ready", "done"].includes(f.contentDocument.body.dataset.state))`, widgets),
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second))); err != nil {
		t.Fatalf("Cancel in every widget: stuck: %v (%s cancelled)\n%s", err, evalJS[string](t, cctx, `String(window.__cancelled)`), dump())
	}
	t.Logf("after Cancel in every widget mid-run: states %s", frames(`d.body.dataset.state`))
	if got := frames(live); got != idleLive {
		t.Errorf("after Cancel in every widget: live GPU memory %s, want %s (states %s)", got, idleLive, frames(`d.body.dataset.state`))
	}
	click(1)
	waitAll("done", "after Cancel")
	if got := frames(result); got != tokens {
		t.Errorf("after Cancel: tokens %.200q, the first runs %.200q", got, tokens)
	}
	t.Logf("%s: GPU accounting at the end: %s", page, frames(accounting))
	screenshot(t, cctx, "faults"+strings.ReplaceAll(strings.TrimSuffix(page, ".html"), "/", "_")+".png")
}
