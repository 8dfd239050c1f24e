//go:build js

// Command wasm is the browser app: it streams a converted weights directory, opens WebGPU (or falls back
// to the CPU), and generates an image scale by scale, drawing each scale's preview as soon as it lands.
//
// URL parameters: weights or model (directory URL, default "weights/", relative to the page), class,
// seed, autostart=1, and any of the model family's settings by name with underscores for dashes (VAR:
// cfg, top_k, top_p, more_smooth, previews; FlexVAR: cfg, top_k, top_p, schedule, aspect, cfg_mode,
// max_pn; the model's own defaults fill the rest, and a setting the model does not take is named in the
// status line), backend (auto: WebGPU, else WebGL2 for the matrix
// products with the CPU, else the CPU; or webgpu, webgl, cpu to insist), ui (canvas: the ebiten UI, the
// default; html: the HTML controls), embed=1 (the HTML controls without the page chrome;
// webvar-widget.js uses it). They prefill the inputs (sampling settings not given come from the model's
// metadata); every run reads the inputs. document.body.dataset.state goes "loading" -> "ready" ->
// "generating" -> "done" (or "error", with dataset.error; a cancelled run goes back to "ready", a
// download cancelled during "loading" goes to "cancelled" until Generate resumes it, one that failed on the
// network after the loader's retries to "stopped" with dataset.error naming the chunk; a lost GPU device
// goes through "loading" back to "ready", with dataset.deviceLost saying what happened) so that tests and
// embedding pages can wait on it; inside an iframe every state is also posted to the parent window as
// {type: "webvar-state", state, error}. dataset.tokens holds the last finished image's tokens as JSON
// (one row-major array per step), a debug hook for tests, and dataset.depth the code depths the image on
// the canvas is made of (models with code depths, RQ: the depth slider, depth.go); dataset.goHeap, goSys, gpuLive, gpuPooled and
// gpuBuffers the memory figures (publishMemory), dataset.retries the chunk retries and dataset.cache
// whether the browser caches the weights ("ok", "none", "refused"). window.webvarSwitchModel(url) loads
// another model in place (the model menu). The HTML controls act on the same app state as
// the canvas UI and the preview window (ui/uistate), so the three cannot disagree.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"net/http"
	"net/url"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall/js"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/family"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/loader/convert"
	"github.com/webvar/webvar/ui/uistate"
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

// params are the page's URL parameters.
type params struct {
	weightsURL string
	class      int
	seed       uint64
	// values are the family settings the URL gave, by setting name (URL parameters spell them with
	// underscores: top_k=1, cfg_mode=llamagen); the model's defaults fill the rest when it has loaded,
	// and the state names those the model does not take.
	values    gen.Settings
	autostart bool
	// An edit from the URL (the widget's data-image, data-mask, data-edit, data-box, data-keep,
	// data-no-class): image and mask URLs (resolved against the page), the mode, a box y0,x0,y1,x1, k.
	editImage, editMask, editMode, editBox, editKeep string
	editNoClass                                      bool
	backend                                          string // URL parameter backend: auto (the default), webgpu, webgl, cpu
	canvasUI                                         bool   // the ebiten UI (canvas.go; the default) instead of the HTML controls (ui=html, embed=1)
}

// pageParams are the URL parameters that are not family settings.
var pageParams = map[string]bool{"weights": true, "model": true, "class": true, "seed": true, "autostart": true,
	"backend": true, "ui": true, "embed": true, "image": true, "mask": true, "edit": true, "box": true, "keep": true, "no_class": true}

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
	p := params{backend: "auto", values: gen.Settings{}}
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
			if e := f(s); e != nil {
				err = fmt.Errorf("URL parameter %s=%q: %v", k, s, e)
			}
		}
	}
	num("class", func(s string) (e error) { p.class, e = strconv.Atoi(s); return })
	num("seed", func(s string) (e error) { p.seed, e = strconv.ParseUint(s, 10, 64); return })
	keys := js.Global().Get("Array").Call("from", q.Call("keys"))
	for i := range keys.Length() {
		k := keys.Index(i).String()
		if !pageParams[k] {
			v, _ := get(k)
			p.values[strings.ReplaceAll(k, "_", "-")] = v
		}
	}
	p.autostart = q.Call("get", "autostart").String() == "1"
	for k, dst := range map[string]*string{"image": &p.editImage, "mask": &p.editMask} {
		if v, ok := get(k); ok && v != "" {
			*dst = js.Global().Get("URL").New(v, loc).Get("href").String()
		}
	}
	p.editMode, _ = get("edit")
	p.editBox, _ = get("box")
	p.editKeep, _ = get("keep")
	p.editNoClass = q.Call("get", "no_class").String() == "1"
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
	// m is the downloaded weights, kept so that a new backend (after a GPU device loss) needs no download.
	m     *weights.Model
	g     gen.Generator
	b     core.Backend
	watch *gpuWatch // b's device-loss notice (nil on the CPU backends)
	names []string  // class names from the model's metadata (nil: numbers)
	// cacheNote says where the weights came from: how many MB from the browser cache and how many from
	// the network, or why there was no cache.
	cacheNote string
}

// checkURLClass rejects a URL class the model does not have.
func (a *app) checkURLClass(class int) error {
	if n := a.g.Info().Classes; class < 0 || class >= n {
		return fmt.Errorf("URL parameter class=%d: this model has classes 0..%d", class, n-1)
	}
	return nil
}

// cacheName is the CacheStorage cache holding verified weight chunks, keyed by their SHA-256.
const cacheName = "webvar-weights-v1"

// countingCache is the loader's cache: the browser's Cache API (c; nil where the page has none) behind
// this page's memory (mem, which also keeps what the browser refused to store, until the load succeeds).
// It counts the bytes the loader had to fetch (every chunk it stores was downloaded and verified; a cached
// entry that failed verification is fetched again and counted there too).
type countingCache struct {
	c       *jscache.Cache
	mem     *memCache
	fetched int64
}

func (c *countingCache) Get(name, sha256 string) ([]byte, bool) {
	if data, ok := c.mem.Get(name, sha256); ok {
		return data, true
	}
	if c.c == nil {
		return nil, false
	}
	return c.c.Get(name, sha256)
}

func (c *countingCache) Put(name, sha256 string, data []byte) {
	c.fetched += int64(len(data))
	if c.c == nil || c.c.Store(name, sha256, data) != nil {
		c.mem.Put(name, sha256, data)
	}
}

// refused is the browser's reason for not storing a chunk (quota, a denied or closed cache), if any.
func (c *countingCache) refused() error {
	if c.c == nil {
		return nil
	}
	return c.c.Refused()
}

// memCache keeps verified chunks in memory for one page (a map: a load is one goroutine at a time).
type memCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *memCache) Get(name, sha256 string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.m[sha256]
	return d, ok
}

func (c *memCache) Put(name, sha256 string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	c.m[sha256] = data
}

func (c *memCache) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

// gpuWatch carries a WebGPU backend's device-loss notice (the device's lost promise) to the page. A loss
// after the page closed the backend itself is not reported.
type gpuWatch struct {
	once   sync.Once
	done   chan struct{} // closed at the loss
	err    error         // wraps core.ErrDeviceLost; set before done closes
	closed atomic.Bool
}

func newGPUWatch() *gpuWatch { return &gpuWatch{done: make(chan struct{})} }

// fire records the loss; it does not block (it runs in the promise's callback).
func (w *gpuWatch) fire(msg string) {
	if w.closed.Load() {
		return
	}
	w.once.Do(func() {
		w.err = fmt.Errorf("%w: %s", webgpu.ErrDeviceLost, msg)
		close(w.done)
	})
}

// fired reports whether the device was lost.
func (w *gpuWatch) fired() bool {
	select {
	case <-w.lost():
		return true
	default:
		return false
	}
}

// lost is closed when the device is lost (nil for a nil watch: never).
func (w *gpuWatch) lost() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.done
}

// explain returns a run's error as the device loss when the device was lost around it: a destroyed
// device rejects the pending buffer map before its lost promise settles, so the loss may arrive a moment
// after the error it caused.
func (w *gpuWatch) explain(err error) error {
	if w == nil || err == nil || errors.Is(err, context.Canceled) || errors.Is(err, core.ErrDeviceLost) {
		return err
	}
	select {
	case <-w.done:
		return fmt.Errorf("%w (the run stopped with: %v)", w.err, err)
	case <-time.After(500 * time.Millisecond):
		return err
	}
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
	pg := &page{st: uistate.New(uistate.Settings{Class: p.class, Seed: p.seed, Values: p.values}), url: p,
		runs: make(chan runOrder, 1), resume: make(chan struct{}, 1), switchTo: make(chan string, 1),
		depths: make(chan depthOrder, 1)}
	pg.setSeedInput()
	// Every handler reads the inputs into the shared state (uistate, the same the canvas UI and the
	// preview window use), applies its action under the mutex and hands work to the worker goroutine:
	// blocking inside a js.FuncOf callback deadlocks the event loop.
	pg.on("webvar-generate", uistate.ActGenerate)
	pg.on("webvar-reroll", uistate.ActReroll)
	pg.on("webvar-randomize", uistate.ActRandomize)
	pg.on("webvar-dice", uistate.ActDice)
	pg.on("webvar-cancel", uistate.ActCancel)
	pg.on("webvar-save", uistate.ActSave)
	pg.setupEdit()
	pg.setupDepth()
	// The model menu (index.html) switches models in this page, without reloading it, through
	// window.webvarSwitchModel(url): the run in flight is cancelled and the old model's backend freed.
	js.Global().Set("webvarSwitchModel", js.FuncOf(func(_ js.Value, args []js.Value) any {
		if len(args) != 1 || args[0].Type() != js.TypeString {
			return false
		}
		pg.mu.Lock()
		loaded := pg.app != nil
		pg.mu.Unlock()
		if !loaded {
			return false // loading (or failed): the menu reloads the page instead
		}
		select {
		case <-pg.switchTo: // a newer pick replaces one not yet taken
		default:
		}
		pg.switchTo <- args[0].String()
		pg.mu.Lock()
		cancel := pg.cancel
		pg.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		return true
	}))
	go pg.worker()
	select {} // keep the Go runtime alive for the callbacks
}

// page is the HTML controls' driver: the DOM is a view of st, and every button an action on it.
type page struct {
	url params

	mu     sync.Mutex
	st     *uistate.State
	cancel context.CancelFunc // of the load or run in flight; nil when idle
	app    *app
	// runs carries a started run's request to the worker (one slot: a run is started only from Idle).
	runs chan runOrder
	// The edit panel (edit.go): the input image and the last image made (for "Use this image").
	editImg image.Image
	last    *core.HostTensor
	drag    *dragBox
	paint   *paintMask
	// resume wakes the loader after a cancelled download (the Load command).
	resume chan struct{}
	// switchTo carries a model picked in the model menu (its weights URL) to the worker.
	switchTo chan string
	// lastRes is the last finished run's result (its tokens: the depth view decodes them); depths
	// carries the depth picked on the slider to the worker (depth.go).
	lastRes *gen.Result
	depths  chan depthOrder
}

// on makes clicks on the element id perform action a.
func (pg *page) on(id string, a uistate.Action) {
	if el := byID(id); el.Truthy() {
		el.Call("addEventListener", "click", js.FuncOf(func(js.Value, []js.Value) any {
			pg.do(a)
			return nil
		}))
	}
}

// do reads the inputs into the state, applies a and carries out the command it returns.
func (pg *page) do(a uistate.Action) {
	pg.mu.Lock()
	pg.readInputs()
	cmd := pg.st.Apply(a)
	cancel := pg.cancel
	pg.mu.Unlock()
	switch cmd.Kind {
	case uistate.Start:
		doc.Get("body").Get("dataset").Delete("error")
		doc.Get("body").Get("dataset").Delete("depth")
		pg.renderDepth()
		setState("generating")
		setBusy()
		select {
		case pg.runs <- runOrder{req: cmd.Request, edit: cmd.Edit}:
		default: // cannot happen: a run starts only from Idle
		}
	case uistate.Cancel:
		if cancel != nil {
			cancel()
		}
	case uistate.Load:
		setState("loading")
		select {
		case pg.resume <- struct{}{}:
		default:
		}
	case uistate.Save:
		save(cmd.Name)
	}
	pg.setSeedInput()
}

// settingIDs are the element ids of the settings index.html has always had (scripts and the widget's
// tests use them); every other setting gets "webvar-" + its name.
var settingIDs = map[string]string{"cfg": "webvar-cfg", "top-k": "webvar-topk", "top-p": "webvar-topp", "more-smooth": "webvar-smooth"}

func settingID(name string) string {
	if id, ok := settingIDs[name]; ok {
		return id
	}
	return "webvar-" + name
}

// readInputs copies the inputs into the state (pg.mu held): class, seed, k and each family setting;
// an input that does not parse keeps the state's value.
func (pg *page) readInputs() {
	st := pg.st
	if st.Model.Classes == 0 {
		// No model yet: the class selector and the settings are placeholders (only the seed is real).
		if el := byID("webvar-seed"); el.Truthy() {
			if v, err := strconv.ParseUint(el.Get("value").String(), 10, 64); err == nil {
				st.Settings.Seed = v
			}
		}
		return
	}
	if el := byID("webvar-class"); el.Truthy() {
		if v, err := strconv.Atoi(el.Get("value").String()); err == nil {
			st.Settings.Class = v
		}
	}
	if el := byID("webvar-seed"); el.Truthy() {
		if v, err := strconv.ParseUint(el.Get("value").String(), 10, 64); err == nil {
			st.Settings.Seed = v
		}
	}
	if el := byID("webvar-k"); el.Truthy() {
		if k, err := strconv.Atoi(el.Get("value").String()); err == nil && k > 0 {
			st.K = k
		}
	}
	pg.readEditInputs()
	for _, d := range st.Model.Settings {
		el := byID(settingID(d.Name))
		if !el.Truthy() {
			continue
		}
		v := el.Get("value").String()
		if d.Kind == gen.Bool {
			v = strconv.FormatBool(el.Get("checked").Bool())
		}
		if d.Check(v) == nil {
			st.Settings.Values[d.Name] = v
		}
	}
}

// setSeedInput shows the state's seed (the dice, a reroll and a randomize draw a new one).
func (pg *page) setSeedInput() {
	pg.mu.Lock()
	seed := pg.st.Settings.Seed
	pg.mu.Unlock()
	setValue("webvar-seed", strconv.FormatUint(seed, 10))
}

// save downloads the canvas as a PNG through a temporary <a download>: no server round trip, and
// toDataURL does not block the event loop for a canvas this small.
func save(name string) {
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

// render sets the buttons from the state's Enabled, the k selector from the reroll's range, and the
// status line from its message.
func (pg *page) render() {
	pg.mu.Lock()
	st := pg.st
	en := map[string]bool{}
	for id, a := range map[string]uistate.Action{"webvar-generate": uistate.ActGenerate, "webvar-cancel": uistate.ActCancel,
		"webvar-reroll": uistate.ActReroll, "webvar-randomize": uistate.ActRandomize, "webvar-save": uistate.ActSave,
		"webvar-edit": uistate.ActEdit} {
		en[id] = st.Enabled(a)
	}
	en["webvar-edit-use"] = pg.last != nil && st.Phase == uistate.Idle
	hideRandomize := st.Phase != uistate.Loading && !st.Model.RandomAfter
	hideReroll := st.Phase != uistate.Loading && !st.Model.Reroll
	noun := st.Model.StepNoun
	pg.mu.Unlock()
	for id, on := range en {
		setEnabled(id, on)
	}
	if el := byID("webvar-randomize"); el.Truthy() && hideRandomize {
		el.Get("style").Set("display", "none")
	}
	// Families without token ids to keep (MAR) have no reroll: hide it and its k selector.
	for _, id := range []string{"webvar-reroll", "webvar-k"} {
		if el := byID(id); el.Truthy() {
			show := ""
			if hideReroll {
				show = "none"
			}
			if id == "webvar-k" && el.Get("parentElement").Truthy() {
				el = el.Get("parentElement") // its label
			}
			el.Get("style").Set("display", show)
		}
	}
	if noun != "" {
		setText("webvar-reroll", "Reroll from "+noun+" k")
		setText("webvar-randomize", "Randomize after "+noun+" k")
	}
}

func setBusy() {
	for _, id := range []string{"webvar-generate", "webvar-reroll", "webvar-randomize", "webvar-save"} {
		setEnabled(id, false)
	}
	setEnabled("webvar-cancel", true)
}

// buildSettings puts one input per family setting into #webvar-settings (the page's static cfg / top-k /
// top-p / more-smooth inputs give way to them), each with the model's default or the URL's value and
// the setting's help as its tooltip. Presets become a datalist: any valid value may still be typed.
func buildSettings(st *uistate.State) {
	box := byID("webvar-settings")
	if !box.Truthy() {
		return
	}
	box.Set("innerHTML", "")
	for _, d := range st.Model.Settings {
		v := st.Settings.Values[d.Name]
		label := doc.Call("createElement", "label")
		label.Set("title", d.Help)
		var in js.Value
		switch d.Kind {
		case gen.Bool:
			in = doc.Call("createElement", "input")
			in.Set("type", "checkbox")
			in.Set("checked", v == "true")
			label.Call("append", in, " "+d.Label)
		case gen.Choice:
			in = doc.Call("createElement", "select")
			for _, c := range d.Choices {
				in.Call("add", js.Global().Get("Option").New(c, c))
			}
			in.Set("value", v)
			label.Call("append", d.Label+" ", in)
		default:
			in = doc.Call("createElement", "input")
			switch d.Kind {
			case gen.Float, gen.Int:
				in.Set("type", "number")
				if d.Max > d.Min {
					in.Set("min", formatFloat(d.Min))
					in.Set("max", formatFloat(d.Max))
				}
				step := d.Step
				if step <= 0 {
					step = 0.01
				}
				in.Set("step", formatFloat(step))
			default:
				in.Set("type", "text")
				in.Get("style").Set("width", "14em")
			}
			in.Set("value", v)
			if len(d.Presets) > 0 && d.Kind != gen.Int {
				list := doc.Call("createElement", "datalist")
				list.Set("id", settingID(d.Name)+"-presets")
				for _, p := range d.Presets {
					list.Call("append", js.Global().Get("Option").New(p))
				}
				box.Call("append", list)
				in.Call("setAttribute", "list", list.Get("id"))
			}
			label.Call("append", d.Label+" ", in)
		}
		in.Set("id", settingID(d.Name))
		box.Call("append", label, " ")
	}
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// fillSelectors lists the model's classes (by name where its metadata has them) and the steps a
// reroll or randomize can keep (of the last finished image, else of the current settings).
func fillSelectors(st *uistate.State, steps int) {
	if sel := byID("webvar-class"); sel.Truthy() && sel.Get("options").Length() != st.Model.Classes {
		sel.Set("innerHTML", "")
		for i := range st.Model.Classes {
			label := strconv.Itoa(i)
			if i < len(st.Model.ClassNames) {
				label += ": " + st.Model.ClassNames[i]
			}
			sel.Call("add", js.Global().Get("Option").New(label, strconv.Itoa(i)))
		}
		sel.Set("value", strconv.Itoa(st.Settings.Class))
	}
	if sel := byID("webvar-k"); sel.Truthy() {
		sel.Set("innerHTML", "")
		for k := 1; k < steps; k++ {
			sel.Call("add", js.Global().Get("Option").New(strconv.Itoa(k), strconv.Itoa(k)))
		}
		sel.Set("value", strconv.Itoa(min(max(st.K, 1), max(1, steps-1))))
	}
}

// worker loads the model, then runs the generations the handlers start, one at a time. When the GPU
// device is lost (during a run or between runs) it names the loss, opens a new backend for the weights it
// already has (no download) and waits for the next Generate.
func (pg *page) worker() {
	defer func() {
		if r := recover(); r != nil {
			fail(fmt.Errorf("internal error: %v", r))
		}
	}()
	ld := newWeightsLoader(pg.url.weightsURL)
	var kept *weights.Model
	for why := ""; ; {
		a, resumed := pg.load(ld, kept)
		if a == nil {
			return
		}
		kept = a.m
		pg.mu.Lock()
		pg.app = a
		pg.st.OnLoaded(uistate.InfoOf(a.g, a.names), nil)
		st := pg.st
		buildSettings(st)
		fillSelectors(st, st.Steps())
		note := st.Message
		pg.mu.Unlock()
		pg.render()
		setState("ready")
		switch err := a.checkURLClass(pg.url.class); {
		case why == "lost":
			setText("webvar-status", note) // "recovered from ...: press Generate"
		case why == "switch":
			setText("webvar-status", "ready ("+a.cacheNote+"; "+note+"): press Generate")
		case err != nil:
			fail(err)
			return
		case pg.url.editImage != "":
			// An edit from the URL (the widget's data-image): load the image (and mask), then edit.
			pg.showEditPanel()
			if pg.urlEdit() && (pg.url.autostart || resumed) {
				pg.do(uistate.ActEdit)
			}
		case pg.url.autostart || resumed:
			// resumed: Generate after a cancelled download resumed it and asked for an image.
			pg.do(uistate.ActGenerate)
		default:
			setText("webvar-status", "ready ("+a.cacheNote+"; "+note+"): press Generate")
		}
		pg.showEditPanel()
		next := pg.serve(a)
		// Free the old backend (its GPU buffers) before opening another.
		a.close()
		pg.mu.Lock()
		pg.app = nil
		if next == "" {
			// The device is lost: a new backend for the same weights.
			why = "lost"
			msg := pg.st.Message
			pg.mu.Unlock()
			setText("webvar-status", msg)
			doc.Get("body").Get("dataset").Set("deviceLost", msg)
			js.Global().Get("console").Call("log", "webvar: "+msg)
			continue
		}
		// Another model: a fresh state as a reload of the page's URL would make (the URL keeps its other
		// parameters: the settings it gives, where the new model takes them, the model's defaults for the
		// rest), keeping the class and seed in use (the class clamped to the new model's when it loads).
		why = "switch"
		pg.st = uistate.New(uistate.Settings{Class: pg.st.Settings.Class, Seed: pg.st.Settings.Seed, Values: pg.url.values})
		pg.url.weightsURL, pg.url.class = next, pg.st.Settings.Class
		pg.last, pg.lastRes, pg.editImg = nil, nil, nil
		pg.mu.Unlock()
		ld, kept = newWeightsLoader(next), nil
		goruntime.GC() // the old model's weights are garbage now: give the heap back before the next load
	}
}

// serve runs the generations the handlers start until a's GPU device is lost (it returns "") or another
// model is picked (it returns its weights URL).
func (pg *page) serve(a *app) string {
	for {
		select {
		case r := <-pg.runs:
			pg.run(a, r)
		case o := <-pg.depths:
			pg.showDepth(a, o)
		case <-a.watch.lost():
			pg.mu.Lock()
			pg.st.OnDeviceLost(a.watch.err)
			pg.mu.Unlock()
		case url := <-pg.switchTo:
			return url
		}
		pg.mu.Lock()
		lost := pg.st.Lost != nil
		pg.mu.Unlock()
		if lost {
			return ""
		}
	}
}

// run generates req, drawing every step's image as it lands, and ends the run in the state.
func (pg *page) run(a *app, order runOrder) {
	req := order.req
	ctx, cancel := context.WithCancel(context.Background())
	pg.mu.Lock()
	pg.cancel = cancel
	id, kind, noun := pg.st.Run.ID, pg.st.Run.Kind, pg.st.Model.StepNoun
	label := pg.st.ClassLabel()
	pg.mu.Unlock()
	setText("webvar-status", fmt.Sprintf("%s: class %s, seed %d ...", kind, label, req.Seed))
	done, count := 0, 0
	onStep := func(ev gen.Step) error {
		if ev.Preview == nil {
			return errors.New("no preview for a step")
		}
		if err := draw(*ev.Preview); err != nil {
			return err
		}
		done, count = ev.Index+1, ev.Count
		pg.mu.Lock()
		pg.st.OnStep(id, ev, nil)
		pg.mu.Unlock()
		setText("webvar-status", fmt.Sprintf("class %s: %s, %.1f s", label, ev.Label, ev.Elapsed.Seconds()))
		// The CPU backend (WebGL2 offload included) computes without yielding; a short sleep hands the
		// event loop a frame to paint the preview and to run the handlers (Cancel) before the next step
		// starts. WebGPU yields whenever it waits for the GPU, so it needs none (it would cost 10 ms a step).
		if !core.IsAsynchronous(a.b) {
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	// A panic in the backend (the WebGPU binding panics on a JavaScript exception, as when a destroyed
	// device's buffer is mapped) ends the run with an error, which explain names as the device loss.
	res, err := gen.Safely(func() (*gen.Result, error) { return pg.generateOrEdit(ctx, a, order, onStep) })
	if pe := (*gen.PanicError)(nil); errors.As(err, &pe) {
		js.Global().Get("console").Call("log", "webvar: "+pe.Error()+"\n"+string(pe.Stack))
	}
	cancel()
	err = a.watch.explain(err)
	var tokens [][]int
	if res != nil {
		tokens = res.Tokens
	}
	pg.mu.Lock()
	pg.cancel = nil
	pg.st.OnDone(id, tokens, err)
	msg := pg.st.Message
	fillSelectors(pg.st, pg.st.Steps())
	if pg.st.Run.Finished {
		fillSelectors(pg.st, len(pg.st.Run.Tokens))
	}
	pg.mu.Unlock()
	switch {
	case err == nil:
		pg.mu.Lock()
		pg.last, pg.lastRes = &res.Images, res
		depth := pg.st.Depth
		pg.mu.Unlock()
		if depth > 0 {
			// Every code depth: the image just drawn (the slider moves it, depth.go).
			doc.Get("body").Get("dataset").Set("depth", strconv.Itoa(depth))
		}
		if b, err := json.Marshal(tokens); err == nil {
			// A debug hook: tests (and curious users) read the tokens of the image on the canvas.
			doc.Get("body").Get("dataset").Set("tokens", string(b))
		}
		if res != nil && res.Latents != nil {
			// The same for continuous tokens (MAR): image 0's, [[token 0's values], ...] in raster order
			// as `webvar generate -tokens` writes them.
			if b, err := json.Marshal(res.LatentRows()); err == nil {
				doc.Get("body").Get("dataset").Set("latents", string(b))
			}
		}
		setText("webvar-status", msg)
		setState("done")
	case errors.Is(err, context.Canceled):
		setText("webvar-status", fmt.Sprintf("cancelled after %s %d/%d", noun, done, max(count, done)))
		setState("ready")
	case errors.Is(err, core.ErrDeviceLost):
		// Not the end: the worker reopens the GPU for the same weights (state "loading", then "ready").
		setText("webvar-status", msg)
	default:
		fail(err)
	}
	publishMemory(a.b)
	pg.render()
	pg.renderDepth()
}

// load downloads the model (or takes kept, the weights downloaded before a device loss) and opens a
// backend for it, with Cancel enabled: a cancelled download, or one that failed on the network after the
// loader's retries, leaves the page in state "cancelled" (or "stopped", with dataset.error naming the
// chunk) until Generate (the state's Load command) resumes it, from the cache for the chunks already
// verified. It returns nil after failing the page; resumed says the user pressed Generate to resume, so
// an image is wanted.
func (pg *page) load(ld *weightsLoader, kept *weights.Model) (a *app, resumed bool) {
	for {
		setState("loading")
		ctx, cancel := context.WithCancel(context.Background())
		pg.mu.Lock()
		pg.cancel = cancel
		pg.mu.Unlock()
		setEnabled("webvar-generate", false)
		setEnabled("webvar-cancel", true)
		var last weights.Progress
		a, err := ld.loadWith(ctx, kept, func() (core.Backend, *gpuWatch, error) { return openBackend(pg.url.backend) },
			func(pr weights.Progress) { last = pr })
		pg.mu.Lock()
		pg.cancel = nil
		if err != nil {
			pg.st.OnProgress(uistate.LoadProgress{BytesDone: last.BytesDone, BytesTotal: last.BytesTotal})
			pg.st.OnLoaded(uistate.ModelInfo{}, err)
		}
		msg := pg.st.Message
		pg.mu.Unlock()
		cancel()
		setEnabled("webvar-cancel", false)
		switch {
		case err == nil:
			return a, resumed
		case errors.Is(err, context.Canceled):
			setText("webvar-status", fmt.Sprintf("download cancelled at %.1f of %.1f MB: press Generate to go on "+
				"(the %d chunks already verified are kept)",
				float64(last.BytesDone)/1e6, float64(last.BytesTotal)/1e6, last.ChunksDone))
			setState("cancelled")
		case weights.Retryable(err):
			// The network failed after the loader's retries: say which chunk, and let Generate try again.
			doc.Get("body").Get("dataset").Set("error", err.Error())
			setText("webvar-status", msg)
			setState("stopped")
		default:
			fail(err)
			return nil, false
		}
		setEnabled("webvar-generate", true)
		<-pg.resume // only Generate is enabled: the state's Load command resumes the download, then runs
		resumed = true
	}
}

// loadWith streams the weights from url (through the browser cache), then opens the backend with open
// and builds the model (any family) on it. kept, if not nil, is the weights downloaded before (a device
// loss reopens the backend, not the download). progress, if set, gets the loader's reports too (the canvas
// UI's progress bar; the HTML status line is written here). Cancelling ctx stops the download with
// ctx.Err(): the chunks verified so far stay in the cache (the browser's, or this page's memory where the
// browser will not store them), so the next load takes them from there. A chunk that fails is tried again
// with backoff (weights.NetworkRetry), each retry shown in the status line and counted in
// dataset.retries.
func (ld *weightsLoader) loadWith(ctx context.Context, kept *weights.Model, open func() (core.Backend, *gpuWatch, error), progress func(weights.Progress)) (*app, error) {
	start := time.Now()
	a := &app{m: kept}
	if a.m == nil {
		m, note, err := ld.download(ctx, progress)
		if err != nil {
			return nil, err
		}
		a.m, a.cacheNote = m, note
	} else {
		a.cacheNote = "weights kept in memory, nothing downloaded"
	}
	total := totalBytes(a.m)
	setText("webvar-status", "weights loaded: "+a.cacheNote)
	var err error
	if a.b, a.watch, err = open(); err != nil {
		return nil, err
	}
	a.g, err = convert.LoadGenerator(a.m, a.b, family.Options{})
	if err != nil {
		a.close()
		return nil, fmt.Errorf("%s: %w", ld.url, err)
	}
	if names, err := convert.ClassNames(a.m.Manifest()); err == nil {
		a.names = names
	}
	setText("webvar-model", fmt.Sprintf("%s; weights %.1f MB in %.1f s (%s)", a.g.Info().Summary,
		float64(total)/1e6, time.Since(start).Seconds(), a.cacheNote))
	publishMemory(a.b)
	return a, nil
}

// close releases the app's backend (its GPU buffers); a loss notice after this is not a loss.
func (a *app) close() {
	if a.watch != nil {
		a.watch.closed.Store(true)
	}
	if c, ok := a.b.(interface{ Close() }); ok {
		c.Close()
	}
}

// weightsLoader downloads one model's weights for a page: through the browser's Cache API when it has
// one, else (and for what the browser refuses to store) through a cache in the page's memory that lives
// until the weights have loaded, so that Load after a failure resumes from the verified chunks either way.
type weightsLoader struct {
	url string
	mem *memCache
}

func newWeightsLoader(url string) *weightsLoader { return &weightsLoader{url: url, mem: &memCache{}} }

func (ld *weightsLoader) download(ctx context.Context, progress func(weights.Progress)) (*weights.Model, string, error) {
	start := time.Now()
	lastDraw := time.Time{}
	cc := &countingCache{mem: ld.mem}
	cacheErr := error(nil)
	if jc, err := jscache.Open(cacheName); err != nil {
		cacheErr = err
		js.Global().Get("console").Call("log", "webvar: no weights cache: "+err.Error())
	} else {
		cc.c = jc
	}
	retries := 0
	opt := weights.LoadOptions{Cache: cc, OnRetry: func(e weights.RetryEvent) {
		retries++
		doc.Get("body").Get("dataset").Set("retries", strconv.Itoa(retries))
		setText("webvar-status", "loading weights: "+e.String())
		js.Global().Get("console").Call("log", "webvar: "+e.String())
	}}
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
	m, err := weights.Load(ctx, weights.HTTPSource(ld.url, http.DefaultClient), opt)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "", fmt.Errorf("loading weights from %s%s: %w", ld.url, crossOriginHint(ld.url, err), err)
	}
	ld.mem.drop() // loaded: the model holds the tensors now
	total := totalBytes(m)
	net := min(cc.fetched, total)
	var note string
	switch refused := cc.refused(); {
	case cacheErr != nil:
		note = fmt.Sprintf("no browser cache (%v): %.1f MB from the network; the weights will not be cached", cacheErr, float64(total)/1e6)
		doc.Get("body").Get("dataset").Set("cache", "none")
	case refused != nil:
		note = fmt.Sprintf("%.1f MB from cache, %.1f MB from the network; the browser would not store them (%v): they will not be cached",
			float64(total-net)/1e6, float64(net)/1e6, refused)
		doc.Get("body").Get("dataset").Set("cache", "refused")
	default:
		note = fmt.Sprintf("%.1f MB from cache, %.1f MB from the network", float64(total-net)/1e6, float64(net)/1e6)
		doc.Get("body").Get("dataset").Set("cache", "ok")
	}
	return m, note, nil
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
// The watch (nil for the CPU backends) reports a later loss of the WebGPU device.
func openBackend(pref string) (core.Backend, *gpuWatch, error) {
	var why []string
	if pref == "auto" || pref == "webgpu" {
		var gb *webgpu.Backend
		watch := newGPUWatch()
		d, err := jsgpu.Open(func(msg string) {
			if gb != nil {
				gb.DeviceLost(msg)
			}
			watch.fire(msg)
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
				return gb, watch, nil
			}
		}
		if pref == "webgpu" {
			return nil, nil, fmt.Errorf("URL parameter backend=webgpu: %w", err)
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
			return c.WithOffload(o), nil, nil
		}
		if pref == "webgl" {
			return nil, nil, fmt.Errorf("URL parameter backend=webgl: %w", err)
		}
		why = append(why, fmt.Sprintf("WebGL2 unavailable: %v", err))
	}
	why = append(why, "using the CPU")
	setText("webvar-backend", strings.Join(why, "; "))
	return c, nil, nil
}

// publishMemory puts the backend's GPU buffer accounting on document.body.dataset (gpuLive, gpuPooled,
// gpuReadback: bytes; gpuBuffers: pooled buffer count), the Go heap in use (goHeap) and the memory the
// Go runtime holds (goSys: the wasm memory it has grown), for the soak tests and for users watching a
// long session: after each run they return to the same level.
func publishMemory(b core.Backend) {
	ds := doc.Get("body").Get("dataset")
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	ds.Set("goHeap", strconv.FormatUint(ms.HeapAlloc, 10))
	ds.Set("goSys", strconv.FormatUint(ms.Sys, 10))
	gb, ok := b.(*webgpu.Backend)
	if !ok {
		return
	}
	st := gb.MemoryStats()
	ds.Set("gpuLive", strconv.FormatUint(st.Live, 10))
	ds.Set("gpuPooled", strconv.FormatUint(st.Pooled, 10))
	ds.Set("gpuReadback", strconv.FormatUint(st.Readback, 10))
	ds.Set("gpuBuffers", strconv.Itoa(st.PoolBuffers))
}

// draw puts image 0 of x ([B, 3, H, W] in [0, 1]) on the canvas; CSS scales it up.
func draw(x core.HostTensor) error {
	img, err := core.ToImage(x, 0)
	if err != nil {
		return err
	}
	return drawImage(img)
}

// drawImage puts img on the canvas (NRGBA: Pix is exactly ImageData's unpremultiplied RGBA layout).
func drawImage(img *image.NRGBA) error {
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

// crossOriginHint explains a fetch the browser refused for weights on another origin: the browser says
// only "Failed to fetch", and the usual cause there is a server that does not allow CORS.
func crossOriginHint(weightsURL string, err error) string {
	u, perr := url.Parse(weightsURL)
	page := js.Global().Get("location").Get("origin").String()
	if perr != nil || u.Host == "" || u.Scheme+"://"+u.Host == page || !strings.Contains(err.Error(), "Failed to fetch") {
		return ""
	}
	return " (the browser refused the request: a server on another origin than this page's must allow it with CORS, Access-Control-Allow-Origin)"
}
