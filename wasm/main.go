//go:build js

// Command wasm is the browser app: it streams a converted weights directory, opens WebGPU (or falls back
// to the CPU), and generates an image scale by scale, drawing each scale's preview as soon as it lands.
//
// URL parameters: weights (directory URL, default "weights/", relative to the page), class, seed, cfg,
// top_k, top_p, more_smooth, previews (linear, fast or full; default: varmodel.Pipeline.InteractivePreviews,
// linear for a model with a fitted map), autostart=1, backend (auto: WebGPU, else WebGL2 for the matrix
// products with the CPU, else the CPU; or webgpu, webgl, cpu to insist), ui (canvas: the ebiten UI, the
// default; html: the HTML controls), embed=1 (the HTML controls without the page chrome;
// webvar-widget.js uses it). They prefill the inputs (sampling settings not given come from the model's
// metadata); every run reads the inputs. document.body.dataset.state goes "loading" -> "ready" ->
// "generating" -> "done" (or "error", with dataset.error; a cancelled run goes back to "ready", a
// download cancelled during "loading" goes to "cancelled" until Generate resumes it) so that tests and
// embedding pages can wait on it; inside an iframe every state is also posted to the parent window as
// {type: "webvar-state", state, error}. dataset.tokens holds the last finished image's tokens as JSON
// (one row-major array per scale), a debug hook for tests.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall/js"
	"time"
	"unicode"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/wasm/jscache"
	"github.com/webvar/webvar/wasm/jsgpu"
	"github.com/webvar/webvar/wasm/webgl"
	"github.com/webvar/webvar/weights"
)

var doc = js.Global().Get("document")

func byID(id string) js.Value { return doc.Call("getElementById", id) }

// setText writes into an element if the page has it: embedding pages may leave some out.
func setText(id, s string) {
	if el := byID(id); el.Truthy() {
		el.Set("textContent", s)
	}
}

// setState publishes the page's state on document.body.dataset.state and, inside an iframe (the
// webvar-widget.js embedding), to the parent window as {type: "webvar-state", state, error}.
func setState(state string) {
	ds := doc.Get("body").Get("dataset")
	ds.Set("state", state)
	win := js.Global().Get("window")
	if parent := win.Get("parent"); parent.Truthy() && !parent.Equal(win) {
		msg := map[string]any{"type": "webvar-state", "state": state}
		if e := ds.Get("error"); state == "error" && e.Truthy() {
			msg["error"] = e.String()
		}
		// "*": the state is no secret, and the embedding page's origin is not known here.
		parent.Call("postMessage", js.ValueOf(msg), "*")
	}
}

func fail(err error) {
	msg := err.Error()
	doc.Get("body").Get("dataset").Set("error", msg)
	setState("error")
	setText("webvar-status", "error: "+msg)
	js.Global().Get("console").Call("log", "webvar: "+msg) // log, not error: the page reports it itself
}

// params are the generation settings, from the URL and then from the inputs.
type params struct {
	weightsURL string
	class      int
	seed       uint64
	cfg        float64
	topK       int
	topP       float64
	moreSmooth bool
	previews   varmodel.PreviewMode // when set["previews"]; else the model's InteractivePreviews
	autostart  bool
	backend    string // URL parameter backend: auto (the default), webgpu, webgl, cpu
	canvasUI   bool   // the ebiten UI (canvas.go; the default) instead of the HTML controls (ui=html, embed=1)
	// set names the sampling parameters the URL gave; the others take the model's own defaults
	// (its manifest meta) once it has loaded, else the values above.
	set map[string]bool
}

// withModelDefaults fills the sampling settings the URL left unset from the model's defaults.
func (p params) withModelDefaults(d *convert.Sampling) params {
	if d == nil {
		return p
	}
	if !p.set["cfg"] {
		p.cfg = d.CFG
	}
	if !p.set["top_k"] {
		p.topK = d.TopK
	}
	if !p.set["top_p"] {
		p.topP = d.TopP
	}
	if !p.set["more_smooth"] {
		p.moreSmooth = d.MoreSmooth
	}
	return p
}

func readURL() (params, error) {
	loc := js.Global().Get("location").Get("href")
	u := js.Global().Get("URL").New(loc)
	q := u.Get("searchParams")
	get := func(k string) (string, bool) {
		if !q.Call("has", k).Bool() {
			return "", false
		}
		return q.Call("get", k).String(), true
	}
	p := params{class: 0, cfg: 4, topK: 900, topP: 0.95, backend: "auto", set: map[string]bool{}}
	w, ok := get("weights")
	if !ok {
		w, ok = get("model") // the same: the URL of the model's converted weights directory
	}
	if !ok || w == "" {
		w = "weights/"
	}
	// Resolve against the page so that "weights/" works wherever the page is served from.
	p.weightsURL = js.Global().Get("URL").New(w, loc).Get("href").String()
	var err error
	num := func(k string, f func(s string) error) {
		if s, ok := get(k); ok && err == nil {
			p.set[k] = true
			if e := f(s); e != nil {
				err = fmt.Errorf("URL parameter %s=%q: %v", k, s, e)
			}
		}
	}
	num("class", func(s string) (e error) { p.class, e = strconv.Atoi(s); return })
	num("seed", func(s string) (e error) { p.seed, e = strconv.ParseUint(s, 10, 64); return })
	num("cfg", func(s string) (e error) { p.cfg, e = strconv.ParseFloat(s, 64); return })
	num("top_k", func(s string) (e error) { p.topK, e = strconv.Atoi(s); return })
	num("top_p", func(s string) (e error) { p.topP, e = strconv.ParseFloat(s, 64); return })
	num("more_smooth", func(s string) (e error) { p.moreSmooth, e = strconv.ParseBool(s); return })
	num("previews", func(s string) (e error) {
		if p.previews, e = varmodel.ParsePreviewMode(s); e == nil && p.previews == varmodel.PreviewNone {
			e = errors.New("the page draws every scale: want linear, fast or full")
		}
		return
	})
	p.autostart = q.Call("get", "autostart").String() == "1"
	if s, ok := get("backend"); ok {
		switch s {
		case "auto", "webgpu", "webgl", "cpu":
			p.backend = s
		default:
			return p, fmt.Errorf("URL parameter backend=%q: want auto, webgpu, webgl or cpu", s)
		}
	}
	// index.html picks the binary by the same rule: the ebiten UI unless ui=html or embed=1 (and the
	// HTML controls in a binary built without it).
	switch s, ok := get("ui"); {
	case !ok:
		p.canvasUI = hasCanvasUI && q.Call("get", "embed").String() != "1"
	case s == "canvas":
		p.canvasUI = true
	case s != "html":
		return p, fmt.Errorf("URL parameter ui=%q: want html or canvas", s)
	}
	return p, err
}

// app is the loaded model and the backend it runs on.
type app struct {
	p       *varmodel.Pipeline
	b       core.Backend
	classes int
	names   []string
	pn      []int // patch sizes per scale
	// sampling is the model's default sampling settings (nil: the page's defaults).
	sampling *convert.Sampling
	// cacheNote says where the weights came from: how many MB from the browser cache and how many from
	// the network, or why there was no cache.
	cacheNote string
}

// cacheName is the CacheStorage cache holding verified weight chunks, keyed by their SHA-256.
const cacheName = "webvar-weights-v1"

// countingCache counts what a load took from the cache and what it stored there. The loader stores
// every chunk it had to download (after verifying it), so the bytes put are the bytes from the network;
// a cached entry that failed verification is counted there too, as it is fetched again.
type countingCache struct {
	c         weights.Cache
	hit, miss int64 // bytes returned by Get; bytes stored by Put
}

func (c *countingCache) Get(name, sha256 string) ([]byte, bool) {
	data, ok := c.c.Get(name, sha256)
	if ok {
		c.hit += int64(len(data))
	}
	return data, ok
}

func (c *countingCache) Put(name, sha256 string, data []byte) {
	c.miss += int64(len(data))
	c.c.Put(name, sha256, data)
}

func main() {
	setState("loading")
	p, err := readURL()
	if err != nil {
		fail(err)
		select {}
	}
	if p.canvasUI {
		runCanvas(p)
		select {}
	}
	u := &ui{base: p, jobs: make(chan job, 1)}
	u.setInputs(p)
	// Every handler only reads the DOM, touches u under its mutex and queues a job: blocking inside a
	// js.FuncOf callback deadlocks the event loop, so the work happens on the worker goroutine.
	u.on("webvar-generate", func() { u.enqueue(job{kind: jobGenerate, q: u.readInputs()}) })
	u.on("webvar-reroll", func() {
		q := u.readInputs()
		q.seed = uint64(rand.Uint32()) // keep the coarse scales, draw the rest anew
		setValue("webvar-seed", strconv.FormatUint(q.seed, 10))
		u.enqueue(job{kind: jobReroll, q: q, k: readK()})
	})
	u.on("webvar-randomize", func() { u.enqueue(job{kind: jobRandomize, q: u.readInputs(), k: readK()}) })
	u.on("webvar-dice", func() { setValue("webvar-seed", strconv.FormatUint(uint64(rand.Uint32()), 10)) })
	u.on("webvar-cancel", u.cancelRun)
	u.on("webvar-save", u.save)
	go u.worker()
	select {} // keep the Go runtime alive for the callbacks
}

// jobKind says how a queued run uses the previous one.
type jobKind int

const (
	jobGenerate  jobKind = iota
	jobReroll            // keep the first k scales' tokens of the last image (Request.Prefix)
	jobRandomize         // uniform random tokens after the first k scales (Request.RandomAfter)
)

type job struct {
	kind jobKind
	q    params
	k    int
}

// ui is the page's state shared between the event handlers (on the JS event loop) and the worker
// goroutine; mu guards the fields the handlers read, held only for a few statements and never across
// anything that yields to the event loop (a handler waiting on it would deadlock the page).
type ui struct {
	jobs chan job // one slot: a second click while a run is queued is dropped

	mu     sync.Mutex
	base   params             // the URL's settings, then with the model's defaults filled in
	cancel context.CancelFunc // of the running generation; nil when idle
	// saveName is the Save PNG file name for what the canvas shows (class-seed.png); "" before the
	// first finished image.
	saveName string
}

// on calls f for every click on the element id, if the page has it.
func (u *ui) on(id string, f func()) {
	if el := byID(id); el.Truthy() {
		el.Call("addEventListener", "click", js.FuncOf(func(js.Value, []js.Value) any {
			f()
			return nil
		}))
	}
}

func (u *ui) enqueue(j job) {
	select {
	case u.jobs <- j:
	default: // a run is already queued
	}
}

// cancelRun stops the running generation (at the next scale boundary) and drops a queued one.
func (u *ui) cancelRun() {
	u.mu.Lock()
	if u.cancel != nil {
		u.cancel()
	}
	u.mu.Unlock()
	select {
	case <-u.jobs:
	default:
	}
}

// save downloads the canvas as a PNG through a temporary <a download>: no server round trip, and
// toDataURL does not block the event loop for a canvas this small.
func (u *ui) save() {
	u.mu.Lock()
	name := u.saveName
	u.mu.Unlock()
	cv := byID("webvar-canvas")
	if name == "" || !cv.Truthy() {
		return
	}
	a := doc.Call("createElement", "a")
	a.Set("download", name)
	a.Set("href", cv.Call("toDataURL", "image/png"))
	a.Call("click")
}

func setValue(id, v string) {
	if el := byID(id); el.Truthy() {
		el.Set("value", v)
	}
}

func setEnabled(id string, on bool) {
	if el := byID(id); el.Truthy() {
		el.Set("disabled", !on)
	}
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// setInputs writes q into the inputs the page has.
func (u *ui) setInputs(q params) {
	setValue("webvar-class", strconv.Itoa(q.class))
	setValue("webvar-seed", strconv.FormatUint(q.seed, 10))
	setValue("webvar-cfg", formatFloat(q.cfg))
	setValue("webvar-topk", strconv.Itoa(q.topK))
	setValue("webvar-topp", formatFloat(q.topP))
	if el := byID("webvar-smooth"); el.Truthy() {
		el.Set("checked", q.moreSmooth)
	}
}

// readInputs returns the settings the inputs show; an input the page lacks or that does not parse
// keeps the URL's (or the model's default) value, and the generation validates the ranges.
func (u *ui) readInputs() params {
	u.mu.Lock()
	q := u.base
	u.mu.Unlock()
	str := func(id string, f func(string) error) {
		if el := byID(id); el.Truthy() {
			_ = f(el.Get("value").String()) // on a parse error the field keeps its value
		}
	}
	str("webvar-class", func(s string) error {
		v, err := strconv.Atoi(s)
		if err == nil {
			q.class = v
		}
		return err
	})
	str("webvar-seed", func(s string) error {
		v, err := strconv.ParseUint(s, 10, 64)
		if err == nil {
			q.seed = v
		}
		return err
	})
	str("webvar-cfg", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err == nil {
			q.cfg = v
		}
		return err
	})
	str("webvar-topk", func(s string) error {
		v, err := strconv.Atoi(s)
		if err == nil {
			q.topK = v
		}
		return err
	})
	str("webvar-topp", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err == nil {
			q.topP = v
		}
		return err
	})
	if el := byID("webvar-smooth"); el.Truthy() {
		q.moreSmooth = el.Get("checked").Bool()
	}
	return q
}

// readK is the scale count the reroll and randomize buttons keep (0 without the selector).
func readK() int {
	if el := byID("webvar-k"); el.Truthy() {
		if k, err := strconv.Atoi(el.Get("value").String()); err == nil {
			return k
		}
	}
	return 0
}

// setIdle enables the controls for the page's idle state: a reroll needs the tokens of a finished image,
// Save a finished image on the canvas (not a cancelled run's preview).
func setIdle(canReroll, canSave bool) {
	setEnabled("webvar-generate", true)
	setEnabled("webvar-cancel", false)
	setEnabled("webvar-reroll", canReroll)
	setEnabled("webvar-randomize", true)
	setEnabled("webvar-save", canSave)
}

func setBusy() {
	for _, id := range []string{"webvar-generate", "webvar-reroll", "webvar-randomize", "webvar-save"} {
		setEnabled(id, false)
	}
	setEnabled("webvar-cancel", true)
}

func (u *ui) worker() {
	defer func() {
		if r := recover(); r != nil {
			fail(fmt.Errorf("internal error: %v", r))
		}
	}()
	a, resumed := u.load()
	if a == nil {
		return
	}
	q := u.base.withModelDefaults(a.sampling)
	u.mu.Lock()
	u.base = q
	u.mu.Unlock()
	a.fillSelectors()
	u.setInputs(q)
	setIdle(false, false)
	setState("ready")
	switch err := a.checkURLClass(q.class); {
	case err != nil:
		fail(err)
	case q.autostart || resumed:
		// resumed: Generate after a cancelled download resumed it and asked for an image.
		u.enqueue(job{kind: jobGenerate, q: u.readInputs()})
	default:
		setText("webvar-status", "ready ("+a.cacheNote+"): press Generate")
	}
	var last [][]int // the last finished image's tokens per scale: what a reroll keeps
	for j := range u.jobs {
		req := varmodel.Request{Labels: []int{j.q.class}, CFG: j.q.cfg, TopK: j.q.topK, TopP: j.q.topP,
			MoreSmooth: j.q.moreSmooth, Seed: j.q.seed, Previews: a.p.InteractivePreviews()}
		if j.q.set["previews"] {
			req.Previews = j.q.previews
		}
		what := ""
		switch j.kind {
		case jobReroll:
			if last == nil || j.k < 1 || j.k >= len(last) {
				setText("webvar-status", fmt.Sprintf("reroll from scale %d: generate an image first (k in 1..%d)", j.k, len(a.pn)-1))
				continue
			}
			req.Prefix = last[:j.k]
			what = fmt.Sprintf(", scales 1-%d kept", j.k)
		case jobRandomize:
			if j.k < 1 || j.k >= len(a.pn) {
				setText("webvar-status", fmt.Sprintf("randomize after scale %d: k must be in 1..%d", j.k, len(a.pn)-1))
				continue
			}
			req.RandomAfter = j.k
			what = fmt.Sprintf(", random after scale %d", j.k)
		}
		ctx, cancel := context.WithCancel(context.Background())
		u.mu.Lock()
		u.cancel = cancel
		u.mu.Unlock()
		setBusy()
		doc.Get("body").Get("dataset").Delete("error")
		u.mu.Lock()
		u.saveName = "" // the canvas is about to show something else
		u.mu.Unlock()
		res, done, err := a.generate(ctx, j.q, req, what)
		u.mu.Lock()
		u.cancel = nil
		u.mu.Unlock()
		cancel()
		switch {
		case err == nil:
			last = res.TokensOf(0, a.pn)
			if b, err := json.Marshal(last); err == nil {
				// A debug hook: tests (and curious users) read the tokens of the image on the canvas.
				doc.Get("body").Get("dataset").Set("tokens", string(b))
			}
			u.mu.Lock()
			u.saveName = fmt.Sprintf("%s-%d.png", a.fileLabel(j.q.class), j.q.seed)
			u.mu.Unlock()
			setState("done")
		case errors.Is(err, context.Canceled):
			setText("webvar-status", fmt.Sprintf("cancelled after scale %d/%d", done, len(a.pn)))
			setState("ready")
		default:
			fail(err)
		}
		setIdle(last != nil, err == nil)
	}
}

// load downloads the model, with Cancel enabled: a cancelled download leaves the page in state
// "cancelled" until Generate resumes it (from the cache for the chunks already verified). It returns nil
// after failing the page; resumed says the user pressed Generate to resume, so an image is wanted.
func (u *ui) load() (a *app, resumed bool) {
	for {
		ctx, cancel := context.WithCancel(context.Background())
		u.mu.Lock()
		u.cancel = cancel
		u.mu.Unlock()
		setEnabled("webvar-generate", false)
		setEnabled("webvar-cancel", true)
		var last weights.Progress
		a, err := loadWith(ctx, u.base.weightsURL, func() (core.Backend, error) { return openBackend(u.base.backend) },
			func(pr weights.Progress) { last = pr })
		u.mu.Lock()
		u.cancel = nil
		u.mu.Unlock()
		cancel()
		setEnabled("webvar-cancel", false)
		switch {
		case err == nil:
			return a, resumed
		case !errors.Is(err, context.Canceled):
			fail(err)
			return nil, false
		}
		setText("webvar-status", fmt.Sprintf("download cancelled at %.1f of %.1f MB: press Generate to go on "+
			"(the %d chunks already verified are kept in the browser cache)",
			float64(last.BytesDone)/1e6, float64(last.BytesTotal)/1e6, last.ChunksDone))
		setState("cancelled")
		setEnabled("webvar-generate", true)
		<-u.jobs // only Generate is enabled: its job resumes the download, then runs
		resumed = true
		setState("loading")
	}
}

// checkURLClass rejects a URL class the model does not have.
func (a *app) checkURLClass(class int) error {
	if class < 0 || class >= a.classes {
		return fmt.Errorf("URL parameter class=%d: this model has classes 0..%d", class, a.classes-1)
	}
	return nil
}

// fillSelectors lists the model's classes (by name where its metadata has them) and the scales a
// reroll or randomize can keep.
func (a *app) fillSelectors() {
	if sel := byID("webvar-class"); sel.Truthy() {
		sel.Set("innerHTML", "")
		for i := range a.classes {
			label := strconv.Itoa(i)
			if i < len(a.names) {
				label += ": " + a.names[i]
			}
			sel.Call("add", js.Global().Get("Option").New(label, strconv.Itoa(i)))
		}
	}
	if sel := byID("webvar-k"); sel.Truthy() {
		sel.Set("innerHTML", "")
		for k := 1; k < len(a.pn); k++ {
			sel.Call("add", js.Global().Get("Option").New(fmt.Sprintf("%d (up to %dx%d)", k, a.pn[k-1], a.pn[k-1]), strconv.Itoa(k)))
		}
		sel.Set("value", strconv.Itoa(max(1, len(a.pn)/2)))
	}
}

// fileLabel names a class in a file name: its name in lower case with dashes, else its number.
func (a *app) fileLabel(class int) string {
	if class < len(a.names) {
		s := strings.ToLower(strings.Join(strings.FieldsFunc(a.names[class], func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}), "-"))
		if s != "" {
			return s
		}
	}
	return strconv.Itoa(class)
}

// loadWith streams the weights from url (through the browser cache), then opens the backend with open
// and builds the pipeline on it. progress, if set, gets the loader's reports too (the canvas UI's
// progress bar; the HTML status line is written here). Cancelling ctx stops the download with ctx.Err():
// the chunks verified so far stay in the cache, so the next load takes them from there.
func loadWith(ctx context.Context, url string, open func() (core.Backend, error), progress func(weights.Progress)) (*app, error) {
	start := time.Now()
	lastDraw := time.Time{}
	opt := weights.LoadOptions{}
	var cc *countingCache
	cacheErr := error(nil)
	if jc, err := jscache.Open(cacheName); err != nil {
		cacheErr = err
		js.Global().Get("console").Call("log", "webvar: no weights cache: "+err.Error())
	} else {
		cc = &countingCache{c: jc}
		opt.Cache = cc
	}
	opt.OnProgress = func(pr weights.Progress) {
		if progress != nil {
			progress(pr)
		}
		// Touching the DOM on every 256 KiB step costs more than it shows.
		if time.Since(lastDraw) < 100*time.Millisecond && pr.BytesDone != pr.BytesTotal {
			return
		}
		lastDraw = time.Now()
		secs := max(time.Since(start).Seconds(), 1e-3)
		rate := float64(pr.BytesDone) / secs // bytes/s so far, cache hits included
		eta := "?"
		if rate > 0 {
			eta = fmt.Sprintf("%.0f s", float64(pr.BytesTotal-pr.BytesDone)/rate)
		}
		setText("webvar-status", fmt.Sprintf("loading weights: %.1f / %.1f MB (%.1f MB/s, ETA %s), chunk %d/%d",
			float64(pr.BytesDone)/1e6, float64(pr.BytesTotal)/1e6, rate/1e6, eta, pr.ChunksDone, pr.ChunksTotal))
	}
	m, err := weights.Load(ctx, weights.HTTPSource(url, http.DefaultClient), opt)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("loading weights from %s: %w", url, err)
	}
	a := &app{}
	total := totalBytes(m)
	if cc != nil {
		net := min(cc.miss, total)
		a.cacheNote = fmt.Sprintf("%.1f MB from cache, %.1f MB from the network", float64(total-net)/1e6, float64(net)/1e6)
	} else {
		a.cacheNote = fmt.Sprintf("no browser cache (%v): %.1f MB from the network", cacheErr, float64(total)/1e6)
	}
	setText("webvar-status", "weights loaded: "+a.cacheNote)
	if a.b, err = open(); err != nil {
		return nil, err
	}
	a.p, err = convert.LoadPipeline(m, a.b, varmodel.Options{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	a.classes = a.p.VAR.Config().Classes
	if names, err := convert.ClassNames(m.Manifest()); err == nil {
		a.names = names
	}
	if a.sampling, err = convert.SamplingOf(m.Manifest()); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	c := a.p.VAR.Config()
	a.pn = c.PatchNums
	setText("webvar-model", fmt.Sprintf("VAR depth %d, width %d, %d classes, %d scales, %dx%d images; weights %.1f MB in %.1f s (%s)",
		c.Depth, c.C, c.Classes, len(c.PatchNums), a.p.VAE.ImageSize(), a.p.VAE.ImageSize(),
		float64(total)/1e6, time.Since(start).Seconds(), a.cacheNote))
	return a, nil
}

func totalBytes(m *weights.Model) int64 {
	var n int64
	for _, c := range m.Manifest().Chunks {
		n += c.Size
	}
	return n
}

// openBackend prefers the browser's WebGPU; without it, the CPU backend with its matrix products and
// convolutions on WebGL2 (wasm/webgl), and without that the CPU alone (slowly). The backend line says
// which and why.
// pref (URL parameter backend) limits the choice: "auto", "webgpu", "webgl" or "cpu".
func openBackend(pref string) (core.Backend, error) {
	var why []string
	if pref == "auto" || pref == "webgpu" {
		var gb *webgpu.Backend
		d, err := jsgpu.Open(func(msg string) {
			if gb != nil {
				gb.DeviceLost(msg)
			}
		})
		if err == nil {
			info := webgpu.AdapterInfo{Name: d.Name, Vendor: d.Vendor, Backend: "browser WebGPU"}
			gb, err = webgpu.NewFromDevice(d.Dev, info, d.Limits)
			if err == nil {
				name := d.Name
				if name == "" {
					name = "unnamed adapter"
				}
				setText("webvar-backend", "WebGPU: "+name)
				return gb, nil
			}
		}
		if pref == "webgpu" {
			return nil, fmt.Errorf("URL parameter backend=webgpu: %w", err)
		}
		why = append(why, fmt.Sprintf("WebGPU unavailable: %v", err))
	}
	// One thread: wasm has no threads, more workers would only add scheduling.
	c := cpu.New(1)
	if pref == "auto" || pref == "webgl" {
		o, err := webgl.Open()
		if err == nil {
			why = append(why, fmt.Sprintf("using WebGL2 (%s) for the matrix products and convolutions, the CPU for the rest", o.Renderer()))
			setText("webvar-backend", strings.Join(why, "; "))
			return c.WithOffload(o), nil
		}
		if pref == "webgl" {
			return nil, fmt.Errorf("URL parameter backend=webgl: %w", err)
		}
		why = append(why, fmt.Sprintf("WebGL2 unavailable: %v", err))
	}
	why = append(why, "using the CPU")
	setText("webvar-backend", strings.Join(why, "; "))
	return c, nil
}

// generate runs req, drawing every scale's preview; it returns the result, the number of scales
// finished (what a cancelled run got to) and the error. what describes the prefix/randomize mode.
func (a *app) generate(ctx context.Context, q params, req varmodel.Request, what string) (*varmodel.Result, int, error) {
	if q.class < 0 || q.class >= a.classes {
		return nil, 0, fmt.Errorf("class %d: this model has classes 0..%d", q.class, a.classes-1)
	}
	setState("generating")
	label := strconv.Itoa(q.class)
	if q.class < len(a.names) {
		label += " (" + a.names[q.class] + ")"
	}
	label += fmt.Sprintf(", seed %d%s", q.seed, what)
	setText("webvar-status", "generating class "+label+" ...")
	done := 0
	res, err := a.p.Generate(ctx, a.b, req, func(ev varmodel.ScaleEvent) error {
		if ev.Preview == nil {
			return errors.New("no preview for a scale")
		}
		if err := draw(*ev.Preview); err != nil {
			return err
		}
		done = ev.Scale + 1
		setText("webvar-status", fmt.Sprintf("class %s: scale %d/%d (%d x %d), %.1f s", label, ev.Scale+1,
			ev.Scales, ev.PN, ev.PN, ev.Elapsed.Seconds()))
		// The CPU backend (WebGL2 offload included) computes without yielding; a short sleep hands the
		// event loop a frame to paint the preview and to run the handlers (Cancel) before the next scale
		// starts. WebGPU yields whenever it waits for the GPU, so it needs none (it would cost 10 ms a scale).
		if !core.IsAsynchronous(a.b) {
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	})
	return res, done, err
}

// draw puts image 0 of x ([B, 3, H, W] in [0, 1]) on the canvas; CSS scales it up.
func draw(x core.HostTensor) error {
	img, err := core.ToImage(x, 0) // NRGBA: Pix is exactly ImageData's unpremultiplied RGBA layout
	if err != nil {
		return err
	}
	cv := byID("webvar-canvas")
	if !cv.Truthy() {
		return nil
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if cv.Get("width").Int() != w || cv.Get("height").Int() != h {
		cv.Set("width", w)
		cv.Set("height", h)
	}
	u8 := js.Global().Get("Uint8ClampedArray").New(len(img.Pix))
	js.CopyBytesToJS(u8, img.Pix)
	data := js.Global().Get("ImageData").New(u8, w, h)
	cv.Call("getContext", "2d").Call("putImageData", data, 0, 0)
	return nil
}
