package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/chromedp"

	"github.com/webvar/webvar/internal/browsertest"
	"github.com/webvar/webvar/weights/fashionflexvar"
)

// soakRuns is the number of generations in a row: def (the 200 on the tiny VAR's CPU run; 20 on
// the other families' tiny models and on WebGPU, where each takes 0.5 to 2 s in the page and CI has a
// time budget); WEBVAR_SOAK_RUNS=N runs N everywhere.
func soakRuns(t *testing.T, def int) int {
	if s := os.Getenv("WEBVAR_SOAK_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			t.Fatalf("WEBVAR_SOAK_RUNS=%q: want a number >= 10", s)
		}
		return n
	}
	return def
}

// memSample is what the page reports about its memory: the Go heap in use (dataset.goHeap), the Go
// runtime's memory from the system (goSys: the wasm linear memory it has grown), the JavaScript heap
// (performance.memory) and the GPU buffer accounting (dataset.gpuLive / gpuPooled / gpuBuffers).
type memSample struct {
	Run        int   `json:"run"`
	GoHeap     int64 `json:"goHeap"`
	GoSys      int64 `json:"goSys"`
	JSHeap     int64 `json:"jsHeap"`
	GPULive    int64 `json:"gpuLive"`
	GPUPooled  int64 `json:"gpuPooled"`
	GPUBuffers int64 `json:"gpuBuffers"`
}

const sampleJS = `(() => {
	const d = document.body.dataset, n = k => Number(d[k] ?? -1);
	return {goHeap: n("goHeap"), goSys: n("goSys"), jsHeap: performance.memory ? performance.memory.usedJSHeapSize : -1,
		gpuLive: n("gpuLive"), gpuPooled: n("gpuPooled"), gpuBuffers: n("gpuBuffers")};
})()`

// Hours of use in one page: 200 generations in a row (20 on the other families' models and on WebGPU, see
// soakRuns), Generate pressed repeatedly during one, Cancel in the middle of one, and 20 switches between
// models of every family (in place, through the model menu). The Go heap and the JavaScript heap stay
// bounded and the GPU buffer accounting returns to its level after every run and every switch; the
// figures are printed.
func TestSoakInChromium(t *testing.T) {
	chrome := browsertest.RequireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	wdir, want := tinyVAR(t, 0)
	app := t.TempDir()
	if err := buildApp(ctx, app, io.Discard); err != nil {
		t.Fatal(err)
	}
	models := append([]servedModel{{Name: "tiny", FS: os.DirFS(wdir)}, {Name: fashionflexvar.Name, FS: fashionflexvar.FS()}},
		familyModels(t)...)
	srv := httptest.NewServer(newServeHandlerModels(app, models))
	defer srv.Close()
	const greedy = "class=1&cfg=1.5&top_k=1&top_p=0&seed=0"

	t.Run("generations", func(t *testing.T) {
		// The CPU backend: a fraction of a second per image, where SwiftShader's WebGPU takes seconds.
		cctx, dump := openPage(ctx, t, chrome, srv.URL+"/?ui=html&backend=cpu&autostart=1&"+greedy, false)
		if !waitAndCompare(t, cctx, dump, want) {
			return
		}
		soakGenerations(t, cctx, dump, "tiny", soakRuns(t, 200))
		if !waitAndCompare(t, cctx, dump, want) {
			return
		}

		// Generate pressed five times during a run: one run, the same image.
		evalJS[any](t, cctx, `document.body.dataset.state = "clicked";
			for (let i = 0; i < 5; i++) document.getElementById("webvar-generate").click();`)
		if !waitAndCompare(t, cctx, dump, want) {
			return
		}
		// Cancel during a scale: back to ready, then the same image.
		evalJS[any](t, cctx, `document.body.dataset.state = "clicked"; document.getElementById("webvar-generate").click()`)
		if _, err := chromedp.Run(cctx, chromedp.Poll[bool](`/scale [1-2]\//.test(document.getElementById("webvar-status").textContent)`,
			chromedp.WithPollingInterval(5*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("waiting for a scale: %v\n%s", err, dump())
		}
		evalJS[any](t, cctx, `document.getElementById("webvar-cancel").click()`)
		waitState(t, cctx, dump, "ready")
		if s := evalJS[string](t, cctx, `document.getElementById("webvar-status").textContent`); !strings.Contains(s, "cancelled after") {
			t.Errorf("after Cancel during a scale the status says %q", s)
		}
		evalJS[any](t, cctx, `document.body.dataset.state = "clicked"; document.getElementById("webvar-generate").click()`)
		waitAndCompare(t, cctx, dump, want)
	})
	// The other families' tiny models: the same tokens (MAR: latents) every run, memory bounded.
	for _, m := range models[2:] {
		t.Run("generations-"+m.Name, func(t *testing.T) {
			cctx, dump := openPage(ctx, t, chrome, srv.URL+"/?ui=html&backend=cpu&autostart=1&class=1&seed=3&top_k=1&model=models/"+m.Name+"/", false)
			waitState(t, cctx, dump, "done")
			first := evalJS[string](t, cctx, resultJS)
			soakGenerations(t, cctx, dump, m.Name, soakRuns(t, 20))
			if last := evalJS[string](t, cctx, resultJS); last != first || len(first) < 10 {
				t.Errorf("the last run made %.200q, the first %.200q", last, first)
			}
		})
	}

	// WebGPU: the GPU buffer accounting is the same after every run as after the first.
	t.Run("generations-webgpu", func(t *testing.T) {
		cctx, dump := openPage(ctx, t, chrome, srv.URL+"/?ui=html&backend=webgpu&autostart=1&"+greedy, true)
		if !waitAndCompare(t, cctx, dump, want) {
			return
		}
		if b := evalJS[string](t, cctx, `document.getElementById("webvar-backend").textContent`); !strings.HasPrefix(b, "WebGPU") {
			browsertest.NoWebGPU(t, b)
		}
		soakGenerations(t, cctx, dump, "tiny on WebGPU", soakRuns(t, 20))
		waitAndCompare(t, cctx, dump, want)
	})

	t.Run("model-switches", func(t *testing.T) {
		// WebGPU: each switch frees the old model's backend and opens one for the new model.
		cctx, dump := openPage(ctx, t, chrome, srv.URL+"/?ui=html&backend=webgpu&"+greedy, true)
		waitState(t, cctx, dump, "ready")
		if b := evalJS[string](t, cctx, `document.getElementById("webvar-backend").textContent`); !strings.HasPrefix(b, "WebGPU") {
			browsertest.NoWebGPU(t, b)
		}
		// The menu lists the tiny model (the default, at weights/), fashionflexvar and the families' tiny
		// models: pick them in turn, ending on the tiny VAR.
		options := evalJS[[]string](t, cctx, `[...document.getElementById("webvar-model-menu").options].map(o => o.value)`)
		if len(options) != len(models) {
			t.Fatalf("model menu %q, want %d models", options, len(models))
		}
		var samples []memSample
		levels := map[string]int64{}
		start := time.Now()
		for i := 1; i <= 20; i++ {
			m := options[i%len(options)]
			evalJS[any](t, cctx, fmt.Sprintf(`(() => {
				document.body.dataset.state = "switching";
				const menu = document.getElementById("webvar-model-menu");
				menu.value = %q;
				menu.dispatchEvent(new Event("change"));
			})()`, m))
			waitState(t, cctx, dump, "ready")
			if u := evalJS[string](t, cctx, `new URLSearchParams(location.search).get("model")`); u != m {
				t.Errorf("switch %d: the URL names model %q, want %q", i, u, m)
			}
			// The JS heap after a collection: each switch passes the new model's chunks (up to 21 MB here)
			// through ArrayBuffers, and without one the sample shows when V8 last chose to collect.
			collectGarbage(t, cctx)
			var s memSample
			raw := evalJS[json.RawMessage](t, cctx, sampleJS)
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatal(err)
			}
			s.Run = i
			samples = append(samples, s)
			if l, ok := levels[m]; ok && l != s.GPULive {
				t.Errorf("switch %d to %s: %d bytes of live GPU buffers, %d the first time", i, m, s.GPULive, l)
			}
			levels[m] = s.GPULive
		}
		t.Logf("20 switches over %d models in %.0f s; live GPU bytes per model: %v", len(options), time.Since(start).Seconds(), levels)
		if n := evalJS[int](t, cctx, `performance.getEntriesByType("navigation").length`); n != 1 {
			t.Errorf("%d navigations: the switches reloaded the page", n)
		}
		logSamples(t, samples)
		checkBounded(t, samples, func(s memSample) int64 { return s.GoHeap }, "Go heap", 48<<20)
		checkBounded(t, samples, func(s memSample) int64 { return s.JSHeap }, "JS heap", 16<<20)
		// And the last model generates what it should.
		if m := options[20%len(options)]; m != options[0] {
			t.Fatalf("the last switch was to %s, want the tiny VAR (%s)", m, options[0])
		}
		evalJS[any](t, cctx, `document.body.dataset.state = "clicked"; document.getElementById("webvar-generate").click()`)
		waitAndCompare(t, cctx, dump, want)
	})
}

// soakGenerations has the page click Generate n-1 more times (the first run is done), each after the
// previous run is done, sampling its memory 20 times along the way, and checks that the GPU buffer
// accounting (live, pooled, buffers) after every run is what it was after the first, and that the heaps
// stay bounded.
func soakGenerations(t *testing.T, cctx context.Context, dump func() string, model string, n int) {
	t.Helper()
	start := time.Now()
	loop := fmt.Sprintf(`(async () => {
		const samples = [], wait = s => new Promise(r => { const f = () => s() ? r() : setTimeout(f, 5); f(); });
		const gpu = () => %s, first = gpu();
		for (let i = 2; i <= %d; i++) {
			document.body.dataset.state = "clicked";
			document.getElementById("webvar-generate").click();
			await wait(() => ["done", "error"].includes(document.body.dataset.state));
			if (document.body.dataset.state !== "done") return {error: document.body.dataset.error, run: i};
			if (gpu() !== first) return {error: "GPU accounting live/pooled/buffers " + gpu() + ", after the first run " + first, run: i};
			if (i %% %d === 0 || i === 2) samples.push(Object.assign(%s, {run: i}));
		}
		return {samples};
	})()`, gpuAccounting("document"), n, max(1, n/20), sampleJS)
	var res struct {
		Error   string      `json:"error"`
		Run     int         `json:"run"`
		Samples []memSample `json:"samples"`
	}
	raw, err := chromedp.Run(cctx, chromedp.Evaluate[json.RawMessage](loop, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %d generations: %v\n%s", model, n, err, dump())
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	if res.Error != "" {
		t.Fatalf("%s: run %d failed: %s", model, res.Run, res.Error)
	}
	secs := time.Since(start).Seconds()
	t.Logf("%s: %d generations in %.0f s (%.2f s each); GPU accounting after each: %s", model, n, secs, secs/float64(n-1),
		evalJS[string](t, cctx, gpuAccounting("document")))
	logSamples(t, res.Samples)
	checkBounded(t, res.Samples, func(s memSample) int64 { return s.GoHeap }, "Go heap", 32<<20)
	checkBounded(t, res.Samples, func(s memSample) int64 { return s.JSHeap }, "JS heap", 16<<20)
	checkBounded(t, res.Samples, func(s memSample) int64 { return s.GoSys }, "wasm memory", 32<<20)
}

// collectGarbage has the page's JavaScript engine collect its garbage (DevTools' HeapProfiler).
func collectGarbage(t *testing.T, cctx context.Context) {
	t.Helper()
	if err := chromedp.Do(cctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, heapprofiler.CollectGarbage, cdp.Empty{})
		return err
	})); err != nil {
		t.Fatalf("collect garbage: %v", err)
	}
}

func logSamples(t *testing.T, samples []memSample) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%6s %10s %10s %10s %10s %10s %8s\n", "run", "Go heap", "wasm mem", "JS heap", "GPU live", "GPU pooled", "buffers")
	for _, s := range samples {
		fmt.Fprintf(&b, "%6d %10.1f %10.1f %10.1f %10.1f %10.1f %8d\n", s.Run, mb(s.GoHeap), mb(s.GoSys), mb(s.JSHeap),
			mb(s.GPULive), mb(s.GPUPooled), s.GPUBuffers)
	}
	t.Logf("memory (MB):\n%s", b.String())
}

func mb(n int64) float64 {
	if n < 0 {
		return -1
	}
	return float64(n) / 1e6
}

// checkBounded fails when the figure's second half reaches past the most of its first half by more than
// slack: growth without bound shows there, a heap that the collector keeps at a level does not.
func checkBounded(t *testing.T, samples []memSample, f func(memSample) int64, what string, slack int64) {
	t.Helper()
	if len(samples) < 4 {
		t.Fatalf("%d memory samples, want 4 or more", len(samples))
	}
	half := len(samples) / 2
	var first, second int64
	for i, s := range samples {
		v := f(s)
		if v < 0 {
			t.Errorf("%s not reported", what)
			return
		}
		if i < half {
			first = max(first, v)
		} else {
			second = max(second, v)
		}
	}
	if second > first+slack {
		t.Errorf("%s grows: at most %.1f MB in the first half of the samples, %.1f MB in the second", what, mb(first), mb(second))
	}
}
