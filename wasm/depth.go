//go:build js

package main

import (
	"errors"
	"image"
	"strconv"
	"syscall/js"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/ui/uistate"
)

// The depth slider (#webvar-depth, for generators with code depths: gen.DepthViewer, RQ): after a run it
// shows the image from the first k code depths, coarse to fine. The state (uistate: Depth, SetDepth,
// OnDepth) is the canvas UI's depth stepper's; the worker decodes, so the event thread never waits.
// document.body.dataset.depth is the k on the canvas (absent without a depth view), for tests.

// depthOrder asks the worker for run id's image from its first k depths.
type depthOrder struct{ id, k int }

// setupDepth makes moving the slider pick a depth.
func (pg *page) setupDepth() {
	el := byID("webvar-depth")
	if !el.Truthy() {
		return
	}
	el.Call("addEventListener", "input", js.FuncOf(func(js.Value, []js.Value) any {
		k, err := strconv.Atoi(el.Get("value").String())
		if err != nil {
			return nil
		}
		pg.mu.Lock()
		cmd := pg.st.SetDepth(k)
		id := 0
		if pg.st.Run != nil {
			id = pg.st.Run.ID
		}
		pg.mu.Unlock()
		if cmd.Kind == uistate.ShowDepth {
			pg.orderDepth(depthOrder{id: id, k: cmd.Depth})
		}
		pg.renderDepth()
		return nil
	}))
}

// orderDepth hands o to the worker without blocking, replacing an order it has not taken yet (a slider
// dragged across several depths decodes only the last).
func (pg *page) orderDepth(o depthOrder) {
	for {
		select {
		case pg.depths <- o:
			return
		default:
		}
		select {
		case <-pg.depths:
		default:
		}
	}
}

// showDepth decodes on the worker and draws the image of the first o.k depths if it is still the one
// picked; every depth is the run's final image, which needs no decode.
func (pg *page) showDepth(a *app, o depthOrder) {
	pg.mu.Lock()
	res, final := pg.lastRes, pg.last
	current := pg.st.Run != nil && pg.st.Run.ID == o.id && pg.st.Depth == o.k && pg.st.DepthView()
	pg.mu.Unlock()
	dv, ok := a.g.(gen.DepthViewer)
	if !ok || res == nil || final == nil || !current {
		return
	}
	x := *final
	var err error
	if o.k < dv.Depths() {
		_, err = gen.Safely(func() (*gen.Result, error) {
			var e error
			x, e = dv.DecodeDepths(res, o.k)
			return nil, e
		})
		err = a.watch.explain(err)
	}
	var img *image.NRGBA
	if err == nil {
		img, err = core.ToImage(x, 0)
	}
	pg.mu.Lock()
	shown := pg.st.OnDepth(o.id, o.k, img, err)
	if errors.Is(err, core.ErrDeviceLost) {
		pg.st.OnDeviceLost(err) // the worker's serve loop reopens the GPU
	}
	msg := pg.st.Message
	pg.mu.Unlock()
	if shown {
		if err := drawImage(img); err != nil {
			fail(err)
			return
		}
		doc.Get("body").Get("dataset").Set("depth", strconv.Itoa(o.k))
	}
	setText("webvar-status", msg)
	publishMemory(a.b)
	pg.renderDepth()
}

// renderDepth shows the slider (at the state's depth) where the state has a depth view, else hides it.
func (pg *page) renderDepth() {
	pg.mu.Lock()
	on, k, d := pg.st.DepthView(), pg.st.Depth, pg.st.Model.Depths
	pg.mu.Unlock()
	if panel := byID("webvar-depth-panel"); panel.Truthy() {
		panel.Set("hidden", !on)
	}
	if !on {
		return
	}
	if el := byID("webvar-depth"); el.Truthy() {
		el.Set("max", strconv.Itoa(d))
		if el.Get("value").String() != strconv.Itoa(k) {
			el.Set("value", strconv.Itoa(k))
		}
	}
	setText("webvar-depth-label", strconv.Itoa(k)+"/"+strconv.Itoa(d))
}
