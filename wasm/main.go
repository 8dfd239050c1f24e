//go:build js

// Command wasm is the browser app: it streams a converted weights directory, opens WebGPU (or falls back
// to the CPU), and generates an image scale by scale, drawing each scale's preview as soon as it lands.
//
// URL parameters: weights (directory URL, default "weights/", relative to the page), class, seed, cfg,
// top_k, top_p, more_smooth, autostart=1. document.body.dataset.state goes "loading" -> "ready" ->
// "generating" -> "done" (or "error", with dataset.error) so that tests and embedding pages can wait on it.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"syscall/js"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/wasm/jscache"
	"github.com/webvar/webvar/wasm/jsgpu"
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

func setState(state string) {
	doc.Get("body").Get("dataset").Set("state", state)
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
	autostart  bool
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
	p := params{class: 0, cfg: 4, topK: 900, topP: 0.95, set: map[string]bool{}}
	w, ok := get("weights")
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
	p.autostart = q.Call("get", "autostart").String() == "1"
	return p, err
}

// app is the loaded model and the backend it runs on.
type app struct {
	p       *varmodel.Pipeline
	b       core.Backend
	classes int
	names   []string
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
	if el := byID("webvar-class"); el.Truthy() {
		el.Set("value", strconv.Itoa(p.class))
	}
	if el := byID("webvar-seed"); el.Truthy() {
		el.Set("value", strconv.FormatUint(p.seed, 10))
	}
	runs := make(chan params, 1)
	// The click handler only reads the inputs and queues a run: blocking inside a js.FuncOf callback
	// deadlocks the event loop, so the work happens on the worker goroutine below.
	click := js.FuncOf(func(js.Value, []js.Value) any {
		q := p
		if el := byID("webvar-class"); el.Truthy() {
			if v, err := strconv.Atoi(el.Get("value").String()); err == nil {
				q.class = v
			}
		}
		if el := byID("webvar-seed"); el.Truthy() {
			if v, err := strconv.ParseUint(el.Get("value").String(), 10, 64); err == nil {
				q.seed = v
			}
		}
		select {
		case runs <- q:
		default: // a run is already queued
		}
		return nil
	})
	go worker(p, runs)
	if btn := byID("webvar-generate"); btn.Truthy() {
		btn.Call("addEventListener", "click", click)
	}
	select {} // keep the Go runtime alive for the callbacks
}

func worker(p params, runs chan params) {
	defer func() {
		if r := recover(); r != nil {
			fail(fmt.Errorf("internal error: %v", r))
		}
	}()
	a, err := load(p.weightsURL)
	if err != nil {
		fail(err)
		return
	}
	setButton(true)
	setState("ready")
	if p.autostart {
		select {
		case runs <- p:
		default:
		}
	} else {
		setText("webvar-status", "ready ("+a.cacheNote+"): press Generate")
	}
	for q := range runs {
		setButton(false)
		if err := a.generate(q); err != nil {
			fail(err)
		} else {
			setState("done")
		}
		setButton(true)
	}
}

func setButton(enabled bool) {
	if btn := byID("webvar-generate"); btn.Truthy() {
		btn.Set("disabled", !enabled)
	}
}

func load(url string) (*app, error) {
	ctx := context.Background()
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
		// Touching the DOM on every 256 KiB step costs more than it shows.
		if time.Since(lastDraw) < 100*time.Millisecond && pr.BytesDone != pr.BytesTotal {
			return
		}
		lastDraw = time.Now()
		secs := max(time.Since(start).Seconds(), 1e-3)
		setText("webvar-status", fmt.Sprintf("loading weights: %.1f / %.1f MB (%.1f MB/s), chunk %d/%d",
			float64(pr.BytesDone)/1e6, float64(pr.BytesTotal)/1e6, float64(pr.BytesDone)/1e6/secs,
			pr.ChunksDone, pr.ChunksTotal))
	}
	m, err := weights.Load(ctx, weights.HTTPSource(url, http.DefaultClient), opt)
	if err != nil {
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
	a.b = openBackend()
	varSrc, vaeSrc, pn, err := convert.Converted(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	a.p, err = varmodel.LoadPipeline(varSrc, vaeSrc, a.b, varmodel.Options{PatchNums: pn})
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
	if el := byID("webvar-class"); el.Truthy() {
		el.Set("max", a.classes-1)
	}
	c := a.p.VAR.Config()
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

// openBackend prefers the browser's WebGPU; without it the CPU backend still works (slowly), and the
// page says so rather than failing.
func openBackend() core.Backend {
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
			return gb
		}
	}
	setText("webvar-backend", fmt.Sprintf("WebGPU unavailable: %v; using the CPU", err))
	// One thread: wasm has no threads, more workers would only add scheduling.
	return cpu.New(1)
}

func (a *app) generate(q params) error {
	q = q.withModelDefaults(a.sampling)
	if q.class < 0 || q.class >= a.classes {
		return fmt.Errorf("class %d: this model has classes 0..%d", q.class, a.classes-1)
	}
	setState("generating")
	label := strconv.Itoa(q.class)
	if q.class < len(a.names) {
		label += " (" + a.names[q.class] + ")"
	}
	setText("webvar-status", "generating class "+label+" ...")
	req := varmodel.Request{Labels: []int{q.class}, CFG: q.cfg, TopK: q.topK, TopP: q.topP,
		MoreSmooth: q.moreSmooth, Seed: q.seed, Previews: varmodel.PreviewFast}
	_, err := a.p.Generate(context.Background(), a.b, req, func(ev varmodel.ScaleEvent) error {
		if ev.Preview == nil {
			return errors.New("no preview for a scale")
		}
		if err := draw(*ev.Preview); err != nil {
			return err
		}
		setText("webvar-status", fmt.Sprintf("class %s: scale %d/%d (%d x %d), %.1f s", label, ev.Scale+1,
			ev.Scales, ev.PN, ev.PN, ev.Elapsed.Seconds()))
		// The CPU backend computes without yielding; a short sleep hands the event loop a frame to paint
		// the preview before the next scale starts.
		time.Sleep(10 * time.Millisecond)
		return nil
	})
	return err
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
