package main

import (
	"context"
	"fmt"
	"image"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chunkGate holds weight-chunk requests while it is closed, so that a test can act in the middle of a
// download: the browser's request waits until the gate opens or the browser aborts it.
type chunkGate struct {
	mu      sync.Mutex
	closed  chan struct{} // nil while open
	pass    int           // requests still let through while closed
	blocked chan struct{} // one send per request that starts waiting (dropped when nobody listens)
	aborted atomic.Int64  // requests the client gave up while held
}

func newChunkGate() *chunkGate { return &chunkGate{blocked: make(chan struct{}, 1)} }

// close holds every request after the next pass ones.
func (g *chunkGate) close(pass int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pass = pass
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
}

func (g *chunkGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

// wait holds r while the gate is closed.
func (g *chunkGate) wait(r *http.Request) {
	g.mu.Lock()
	c := g.closed
	if c != nil && g.pass > 0 {
		g.pass--
		c = nil
	}
	g.mu.Unlock()
	if c == nil {
		return
	}
	select {
	case g.blocked <- struct{}{}:
	default:
	}
	select {
	case <-c:
	case <-r.Context().Done():
		g.aborted.Add(1)
	}
}

// testCancelDownload opens page in a fresh profile (nothing cached) with the chunk downloads held after
// the first, presses Cancel in the middle of the download, and checks that the page says so (state
// "cancelled"), that the browser really aborted the request, and that pressing Generate (the canvas UI:
// Load, then Generate) resumes the download, taking the first chunk from the cache, and draws want.
func testCancelDownload(ctx context.Context, t *testing.T, chrome, page string, gate *chunkGate, want *image.NRGBA, canvasUI bool) {
	gate.close(1)
	defer gate.open()
	abortedBefore := gate.aborted.Load()
	cctx, dump := openPage(ctx, t, chrome, page, false)
	select {
	case <-gate.blocked:
	case <-time.After(2 * time.Minute):
		t.Fatalf("no chunk request reached the server\n%s", dump())
	}
	str := func(js string) string { t.Helper(); return evalString(t, cctx, js) }
	if s := str(`document.body.dataset.state`); s != "loading" {
		t.Fatalf("state %q while a chunk is held, want loading\n%s", s, dump())
	}
	if canvasUI {
		// Esc is the canvas UI's Cancel shortcut (uistate: enabled while loading).
		pressKey(t, cctx, kb.Escape)
	} else {
		if dis := str(`String(document.getElementById("webvar-cancel").disabled)`); dis != "false" {
			t.Fatalf("Cancel is disabled during the download\n%s", dump())
		}
		if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](`document.getElementById("webvar-cancel").click()`)); err != nil {
			t.Fatal(err)
		}
	}
	waitState(t, cctx, dump, "cancelled")
	deadline := time.Now().Add(30 * time.Second)
	for gate.aborted.Load() == abortedBefore && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if gate.aborted.Load() == abortedBefore {
		t.Errorf("Cancel did not abort the held chunk request\n%s", dump())
	}
	if !canvasUI {
		if s := str(`document.getElementById("webvar-status").textContent`); !strings.Contains(s, "download cancelled at") {
			t.Errorf("status after Cancel: %q, want it to say the download was cancelled", s)
		}
		if dis := str(`String(document.getElementById("webvar-generate").disabled)`); dis != "false" {
			t.Errorf("Generate is disabled after a cancelled download: nothing could resume it")
		}
	}

	gate.open()
	if canvasUI {
		pressKey(t, cctx, "g") // Load: the button reads "Load (G)" now
		waitState(t, cctx, dump, "ready")
		// Count the page's animation frames while the run is in flight: on the CPU fallback Go computes on
		// the page's only thread, so without a pause per scale (ui.Config.SyncScales) no frame would be
		// drawn until the end, and neither the scales nor a Cancel click would get through.
		if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](`(() => {
			window.frames_ = 0; window.framesAt_ = {};
			(function tick() { window.frames_++; requestAnimationFrame(tick); })();
			new MutationObserver(() => { window.framesAt_[document.body.dataset.state] = window.frames_; })
				.observe(document.body, {attributes: true, attributeFilter: ["data-state"]});
		})()`)); err != nil {
			t.Fatal(err)
		}
		pressKey(t, cctx, "g") // Generate
		waitState(t, cctx, dump, "done")
		frames, err := chromedp.Run(cctx, chromedp.Evaluate[int](`window.framesAt_.done - window.framesAt_.generating`))
		if err != nil {
			t.Fatal(err)
		}
		// var-tiny has 4 scales: a frame after each of the first three at least.
		if frames < 3 {
			t.Errorf("%d animation frames during the 4-scale run on the CPU fallback: the page did not get to draw the scales", frames)
		}
		t.Logf("%d animation frames during the run", frames)
		if tk := str(`document.body.dataset.tokens ?? ""`); !strings.HasPrefix(tk, "[[") {
			t.Errorf("no tokens published after the resumed load's run: %q", tk)
		}
		return
	}
	if _, err := chromedp.Run(cctx, chromedp.Evaluate[any](`document.getElementById("webvar-generate").click()`)); err != nil {
		t.Fatal(err)
	}
	if !waitAndCompare(t, cctx, dump, want) {
		return
	}
	// The chunk that arrived before the cancel was verified and cached: the resumed load took it from there.
	if s := str(`document.getElementById("webvar-model").textContent`); strings.Contains(s, " 0.0 MB from cache") || !strings.Contains(s, "MB from cache") {
		t.Errorf("after resuming, the page says %q: want the chunk loaded before the cancel to come from the cache", s)
	}
}

// pressKey presses and releases a key in the page (ebiten's canvas listens for it). The key stays down for
// a few frames: ebiten samples the keyboard once per tick, so a press and release dispatched back to back
// can fall between two ticks and never be seen.
func pressKey(t *testing.T, cctx context.Context, key string) {
	t.Helper()
	press := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for _, r := range key {
			for _, ev := range kb.Encode(r) {
				if ev.Type == input.DispatchKeyEventTypeKeyUp {
					time.Sleep(150 * time.Millisecond)
				}
				if _, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, *ev); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err := chromedp.Do(cctx, press); err != nil {
		t.Fatal(fmt.Errorf("key %q: %w", key, err))
	}
}
