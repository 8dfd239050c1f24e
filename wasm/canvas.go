//go:build js && canvasui

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"strconv"
	"strings"
	"syscall/js"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/gen"
	ebitenui "github.com/webvar/webvar/ui"
	"github.com/webvar/webvar/ui/uistate"
	"github.com/webvar/webvar/weights"
)

// hasCanvasUI says this binary has the ebiten UI, the demo page's default.
const hasCanvasUI = true

// runCanvas is the demo page's default UI (and ?ui=canvas): the ebiten UI of webvar preview (package ui:
// progress, the scale-by-scale animation and every control drawn on one canvas) instead of the HTML
// controls, computing with the browser's WebGPU or the CPU fallback like the HTML page.
// document.body.dataset.state goes loading (-> cancelled -> loading) -> ready -> generating -> done/error
// as there, and dataset.tokens holds the last image's tokens. It returns when the game ends (it does not,
// in a browser tab).
func runCanvas(p params) {
	// The HTML controls and their canvas give way to ebiten's canvas.
	// (ebiten adds its canvas to the body when its package initialises, before this runs.)
	children := doc.Get("body").Get("children")
	for i := range children.Length() {
		el := children.Index(i)
		id, tag := el.Get("id").String(), el.Get("tagName").String()
		if tag == "SCRIPT" || tag == "CANVAS" && id != "webvar-canvas" || id == "webvar-models" {
			continue // the model menu stays above the canvas UI
		}
		el.Get("style").Set("display", "none")
	}
	// ebiten's canvas fills the body, which then spans the window (index.html narrows it for the HTML
	// controls); the backend line is drawn in the UI (Config.Notice).
	doc.Get("body").Get("style").Set("maxWidth", "none")
	b, watch, err := openBackend(p.backend)
	if err != nil {
		fail(err)
		return
	}
	_, onCPU := b.(*cpu.Backend)
	// openBackend wrote the backend line: the UI shows it, so that a CPU fallback is visible here too.
	notice := byID("webvar-backend").Get("textContent").String()
	// An edit from the URL (image=, edit=, box=, keep=, no_class=): the game edits it (E; autostart at once).
	var editImg image.Image
	var editSpec uistate.EditSpec
	if p.editImage != "" {
		if editImg, err = fetchImage(p.editImage); err != nil {
			fail(err)
			return
		}
		editSpec = uistate.EditSpec{Mode: uistate.EditMode(p.editMode), NullClass: p.editNoClass}
		if p.editKeep != "" {
			if editSpec.K, err = strconv.Atoi(p.editKeep); err != nil {
				fail(fmt.Errorf("URL parameter keep=%q: %v", p.editKeep, err))
				return
			}
		}
		if p.editBox != "" {
			parts := strings.Split(p.editBox, ",")
			for i := 0; i < 4 && i < len(parts); i++ {
				editSpec.Box[i], _ = strconv.ParseFloat(strings.TrimSpace(parts[i]), 64)
			}
		}
	}
	ld := newWeightsLoader(p.weightsURL)
	var kept *weights.Model // the weights, kept across a reopened backend
	var g *ebitenui.Game
	// watchLoss tells the game of a loss of w's device while no run is in flight (a run's own failure
	// comes through RunError); a backend the page replaced is not watched any more.
	watchLoss := func(w *gpuWatch) {
		go func() {
			<-w.lost()
			if !w.closed.Load() && g != nil {
				g.DeviceLost(w.err)
			}
		}()
	}
	if watch != nil {
		watchLoss(watch)
	}
	g, err = ebitenui.New(ebitenui.Config{
		Notice:    notice,
		EditImage: editImg,
		Edit:      editSpec,
		// On the CPU fallback a run would not yield to the page between scales: no frame, no Cancel.
		SyncScales: onCPU,
		Load: func(ctx context.Context, progress func(done, total int64)) (gen.Generator, []string, error) {
			setState("loading")
			reopened := watch.fired()
			if reopened {
				// The device is lost: a new backend for the weights already here.
				lost := watch
				(&app{b: b, watch: lost}).close()
				if b, watch, err = openBackend(p.backend); err != nil {
					return nil, nil, err
				}
				if watch != nil {
					watchLoss(watch)
				}
				msg := fmt.Sprintf("%v: reopened (%s)", lost.err, byID("webvar-backend").Get("textContent").String())
				doc.Get("body").Get("dataset").Set("deviceLost", msg)
				js.Global().Get("console").Call("log", "webvar: "+msg)
			}
			a, err := ld.loadWith(ctx, kept, func() (core.Backend, *gpuWatch, error) { return b, watch, nil }, func(pr weights.Progress) {
				progress(pr.BytesDone, pr.BytesTotal)
			})
			switch {
			case errors.Is(err, context.Canceled):
				setState("cancelled")
				return nil, nil, err
			case err != nil:
				return nil, nil, err
			}
			kept = a.m
			if err := a.checkURLClass(p.class); err != nil {
				return nil, nil, err
			}
			if !p.autostart || reopened {
				setState("ready")
			}
			return a.g, a.names, nil
		},
		RunError: func(err error) error {
			err = watch.explain(err)
			if watch != nil && errors.Is(err, core.ErrDeviceLost) {
				watch.fire(err.Error()) // a device that failed without its lost promise: replace it too
			}
			return err
		},
		Settings:  uistate.Settings{Class: p.class, Seed: p.seed, Values: p.values},
		AutoStart: p.autostart,
		Save:      downloadPNG,
		Started: func() {
			doc.Get("body").Get("dataset").Delete("error")
			setState("generating")
		},
		Finished: func(tokens [][]int, err error) {
			switch {
			case err == nil:
				if buf, err := json.Marshal(tokens); err == nil {
					doc.Get("body").Get("dataset").Set("tokens", string(buf))
				}
				setState("done")
			case errors.Is(err, context.Canceled):
				setState("ready")
			case errors.Is(err, core.ErrDeviceLost) || weights.Retryable(err):
				// Not a dead end: the game reopens the GPU (a loss) or offers Load again (the network).
				doc.Get("body").Get("dataset").Set("error", err.Error())
				setState("stopped")
			default:
				fail(err)
			}
		},
	})
	if err != nil {
		fail(err)
		return
	}
	if err := ebitenui.Run(g, "webvar"); err != nil {
		fail(err)
	}
}

// downloadPNG is the canvas UI's Save: the browser downloads the image (an <a download> with a data URL,
// as the HTML page's Save PNG does).
func downloadPNG(img image.Image, name string) (string, error) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", err
	}
	a := doc.Call("createElement", "a")
	a.Set("download", name)
	a.Set("href", "data:image/png;base64,"+base64.StdEncoding.EncodeToString(buf.Bytes()))
	a.Call("click")
	return name + " (downloaded)", nil
}
