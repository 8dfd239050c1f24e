// Package ui is the interactive preview: an ebiten game that shows the weights loading, then VAR's
// generation scale by scale, with the controls drawn on the canvas. The logic lives in ui/uistate (plain
// Go, tested without a display); this package only feeds it input and draws it.
//
// Natively ebiten opens an X11/GL window and panics at package initialisation without a display, so only
// binaries built for the window import this package (cmd/webvar with -tags preview; the browser build).
package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hajimehoshi/ebiten/v2"
	"github.com/hajimehoshi/ebiten/v2/text/v2"
	"golang.org/x/image/font/gofont/goregular"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/ui/uistate"
)

// LoadFunc loads the model, of any family, onto Config.Backend, reporting progress (bytes so far of
// total; total 0 when unknown) as it goes, and returns it as a gen.Generator with the class names from
// the weights' metadata (nil: numbers are shown). It returns ctx.Err() when ctx is cancelled (the user
// pressed Cancel during the download); the game may call it again (Load after a cancel), so it must be
// safe to repeat.
type LoadFunc func(ctx context.Context, progress func(done, total int64)) (gen.Generator, []string, error)

// Config sets up a Game.
type Config struct {
	Backend  core.Backend // the backend the generator Load returns runs on (kept open for the game's life)
	Load     LoadFunc     // required: Run starts it beside the window
	Settings uistate.Settings
	// AutoStart generates once as soon as the model has loaded.
	AutoStart bool
	// Screenshot, when set, writes the canvas as a PNG here once the first run has finished and ends
	// the game (Run returns the run's error, if any): the headless test of the whole UI. A run that a
	// device loss ended is run again once, after the GPU is reopened (with AutoStart).
	Screenshot string
	// Depth, with Screenshot, shows the first run's image from its first Depth code depths
	// (gen.DepthViewer: the depth stepper) and captures that instead.
	Depth int
	// Save stores a finished image under the suggested file name and returns where it went (shown in the
	// status line). Nil: SaveToDir(".").
	Save func(img image.Image, name string) (string, error)
	// Finished, if set, is called on the game goroutine when a run ends, with its tokens per scale (nil
	// unless it completed) and its error (context.Canceled for a cancelled run), and when loading fails
	// (nil tokens, the error; not for a download the user cancelled): the browser page publishes it as
	// document.body.dataset.state.
	Finished func(tokens [][]int, err error)
	// SyncScales makes a run wait, after each scale, until the game has taken that scale in: where
	// computing blocks everything else (the CPU backend in a browser, where Go runs on the page's one
	// thread), this lets each scale be drawn and a Cancel be seen before the next scale starts. It costs
	// up to a frame per scale, so native windows leave it off.
	SyncScales bool
	// RunError, if set, maps a run's error before the state sees it (on the run's goroutine; it may
	// wait): the browser explains a failed buffer map as the device loss that caused it, so that the game
	// reopens the GPU (see DeviceLost) instead of reporting an error.
	RunError func(error) error
	// Notice, if set, is a line about how the game computes (the browser's "WebGPU unavailable ...; using
	// the CPU"), drawn at the bottom of the control panel.
	Notice string
	// Started, if set, is called on the game goroutine when a run starts (the browser page's
	// "generating" state).
	Started func()
	// EditImage, when set, is an image to edit (webvar preview -image, the page's image=): Edit (E) edits
	// it as Edit describes (the mode, box, kept steps; a box can also be dragged across the image), and
	// AutoStart edits instead of generating. Files dropped onto the window replace it.
	EditImage image.Image
	Edit      uistate.EditSpec
	// StepHook, if set, is called on the run's goroutine after each step of a run has been handed to the
	// state, with the step's index: where a test injects a fault, such as a lost device, at the moment a
	// real one could strike (webvar preview's WEBVAR_TEST_LOSE_DEVICE).
	StepHook func(step int)
}

// SaveToDir is a Config.Save that writes PNG files into dir.
func SaveToDir(dir string) func(image.Image, string) (string, error) {
	return func(img image.Image, name string) (string, error) {
		path := filepath.Join(dir, name)
		if err := writePNG(path, img); err != nil {
			return "", err
		}
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		return path, nil
	}
}

// Game is the ebiten game. Create it with New and run it with Run on the main goroutine; Run loads the
// model with Config.Load beside the window.
type Game struct {
	cfg  Config
	st   *uistate.State
	face *text.GoTextFace

	// inbox carries state changes from the loading and generating goroutines; Update applies them, so
	// the state is only ever touched on the game goroutine.
	inbox chan func()
	quit  chan struct{} // closed when Run returns: senders stop waiting

	gen    gen.Generator
	cancel context.CancelFunc // of the load or run in flight
	// last is the last finished run's result: a depth view (gen.DepthViewer) decodes its tokens.
	last *gen.Result
	// compute serialises the backend's work between a run and depth decodes (both off the game
	// goroutine); depthWant is the depth last picked, so that decodes already overtaken are skipped.
	compute   sync.Mutex
	depthWant atomic.Int64
	// autoDone: the first load has happened, and with it Config.AutoStart's run.
	autoDone bool
	// shotRetried: in Screenshot mode, the run was already started again once after a device loss.
	shotRetried bool

	images  map[*image.NRGBA]*ebiten.Image // previews uploaded once, per run
	imageOf int                            // the run ID images belong to

	editImg  image.Image   // the input of edits (Config.EditImage, a dropped file, or the image just made)
	editShow *ebiten.Image // it, fitted to the model's size, shown until a run draws over it
	dragFrom *image.Point  // a box being dragged across the image

	shotDone bool
	exitErr  error // ends the game (Screenshot mode) after the screenshot
}

// New builds a game in the loading state.
func New(cfg Config) (*Game, error) {
	if cfg.Load == nil {
		return nil, errors.New("ui: Config.Load is nil")
	}
	if cfg.Save == nil {
		cfg.Save = SaveToDir(".")
	}
	src, err := text.NewGoTextFaceSource(bytes.NewReader(goregular.TTF))
	if err != nil {
		return nil, fmt.Errorf("ui: font: %w", err)
	}
	st := uistate.New(cfg.Settings)
	st.Edit, st.EditReady = cfg.Edit, cfg.EditImage != nil
	return &Game{
		editImg: cfg.EditImage,
		cfg:     cfg,
		st:      st,
		face:    &text.GoTextFace{Source: src, Size: 14},
		inbox:   make(chan func(), 64),
		quit:    make(chan struct{}),
		images:  map[*image.NRGBA]*ebiten.Image{},
	}, nil
}

// post hands f to the game goroutine; it gives up (false) when the game has ended or ctx is done.
func (g *Game) post(ctx context.Context, f func()) bool {
	select {
	case g.inbox <- f:
		return true
	case <-g.quit:
	case <-ctx.Done():
	}
	return false
}

// startLoad runs Config.Load in a goroutine; Cancel stops it (the state goes to Stopped, and Load starts
// it again).
func (g *Game) startLoad() {
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	start := time.Now()
	go func() {
		defer cancel()
		p, names, err := g.cfg.Load(ctx, func(done, total int64) {
			pr := uistate.LoadProgress{BytesDone: done, BytesTotal: total, Elapsed: time.Since(start)}
			// A report is dropped rather than slowing the loader when the game is behind.
			select {
			case g.inbox <- func() { g.st.OnProgress(pr) }:
			default:
			}
		})
		if err == nil && ctx.Err() != nil {
			// Cancelled after the last read: still the user's cancel, but the model is here, so keep it.
			err = nil
		}
		g.post(context.Background(), func() { g.loaded(p, names, err) })
	}()
}

// loaded takes the loaded generator or the loading error on the game goroutine.
func (g *Game) loaded(p gen.Generator, classNames []string, err error) {
	g.cancel = nil
	if err != nil {
		g.st.OnLoaded(uistate.ModelInfo{}, err)
		if errors.Is(err, context.Canceled) {
			return // Stopped: the user may load again
		}
		// A network failure also stops (Load tries again); Finished hears of it so that the page can say so.
		if g.cfg.Finished != nil {
			g.cfg.Finished(nil, err)
		}
		if g.cfg.Screenshot != "" {
			g.exitErr = err
			g.shotDone = true
		}
		return
	}
	g.gen = p
	g.st.OnLoaded(uistate.InfoOf(p, classNames), nil)
	if g.cfg.Edit.Mode != "" {
		g.st.Edit.Mode = g.cfg.Edit.Mode // the caller's mode, checked when the edit starts
	}
	auto := g.cfg.AutoStart && !g.autoDone
	// A later load (after a cancel or a device loss) does not start a run by itself, except that
	// Screenshot mode clears autoDone to run again after a loss (startRun).
	g.autoDone = true
	switch {
	case auto && g.editImg != nil:
		g.do(uistate.ActEdit)
		if g.st.Phase != uistate.Generating && g.cfg.Screenshot != "" {
			g.exitErr = errors.New(g.st.Message) // the edit could not start: say why and end
			g.shotDone = true
		}
	case auto:
		g.do(uistate.ActGenerate)
	}
}

// Run opens the window and runs the game until it is closed (or, in screenshot mode, until the
// screenshot is written). It must be called on the main goroutine.
func Run(g *Game, title string) error {
	defer close(g.quit)
	defer func() {
		if g.cancel != nil {
			g.cancel()
		}
	}()
	ebiten.SetWindowSize(uistate.Width, uistate.Height)
	ebiten.SetWindowTitle(title)
	ebiten.SetWindowResizingMode(ebiten.WindowResizingModeEnabled)
	// The window may sit unfocused (a test under Xvfb, a user in another window) while a run streams in.
	ebiten.SetRunnableOnUnfocused(true)
	g.startLoad()
	err := ebiten.RunGame(g)
	if errors.Is(err, ebiten.Termination) {
		err = nil
	}
	if err == nil {
		err = g.exitErr
	}
	return err
}

// do applies an action and carries out the command it returns.
func (g *Game) do(a uistate.Action) {
	cmd := g.st.Apply(a)
	switch cmd.Kind {
	case uistate.Start:
		g.startRun(g.st.Run.ID, cmd.Request, cmd.Edit)
	case uistate.Cancel:
		if g.cancel != nil {
			g.cancel()
		}
	case uistate.Load:
		g.startLoad()
	case uistate.Save:
		if img := g.st.Shown(); img != nil {
			g.st.OnSaved(g.cfg.Save(img, cmd.Name))
		}
	case uistate.ShowDepth:
		g.showDepth(g.st.Run.ID, cmd.Depth)
	}
}

// showDepth decodes the last image from its first k code depths in a goroutine and hands it to the state
// (OnDepth); all depths are the final image, already here.
func (g *Game) showDepth(id, k int) {
	g.depthWant.Store(int64(k))
	dv, ok := g.gen.(gen.DepthViewer)
	res := g.last
	if !ok || res == nil {
		return
	}
	if k == dv.Depths() {
		g.setDepth(id, k, nil, nil)
		return
	}
	go func() {
		g.compute.Lock()
		defer g.compute.Unlock()
		if g.depthWant.Load() != int64(k) {
			return // another depth was picked meanwhile
		}
		var img *image.NRGBA
		_, err := gen.Safely(func() (*gen.Result, error) {
			x, err := dv.DecodeDepths(res, k)
			if err == nil {
				img, err = core.ToImage(x, 0)
			}
			return nil, err
		})
		if g.cfg.RunError != nil {
			err = g.cfg.RunError(err)
		}
		g.post(context.Background(), func() { g.setDepth(id, k, img, err) })
	}()
}

// setDepth records a depth's image on the game goroutine, freeing the texture of the one it replaces.
func (g *Game) setDepth(id, k int, img *image.NRGBA, err error) {
	old := g.st.DepthImage
	if g.st.OnDepth(id, k, img, err) && old != nil && old != img {
		if im, ok := g.images[old]; ok {
			im.Deallocate()
			delete(g.images, old)
		}
	}
	if errors.Is(err, core.ErrDeviceLost) {
		g.st.OnDeviceLost(err)
		g.reopenIfLost()
	}
	if err != nil && g.cfg.Screenshot != "" && g.cfg.Depth > 0 {
		g.exitErr, g.shotDone = err, true
	}
}

// depthReady says the screenshot may be taken: the image of Config.Depth depths is shown.
func (g *Game) depthReady() bool {
	if g.cfg.Depth == 0 {
		return true
	}
	k := min(g.cfg.Depth, g.st.Model.Depths)
	return g.st.Depth == k && (k == g.st.Model.Depths || g.st.DepthImage != nil)
}

// startRun generates in a goroutine so that the window stays responsive; each scale's preview comes
// back through the inbox as soon as it is decoded. Cancel stops the engine between scales.
func (g *Game) startRun(id int, req gen.Request, e *uistate.EditSpec) {
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	if g.cfg.Started != nil {
		g.cfg.Started()
	}
	p, img := g.gen, g.editImg
	run := p.Generate
	if e != nil {
		run = func(ctx context.Context, req gen.Request, onStep func(gen.Step) error) (*gen.Result, error) {
			er, err := e.Request(p, img, req)
			if err != nil {
				return nil, err
			}
			return p.(gen.Editor).Edit(ctx, er, onStep)
		}
	}
	go func() {
		defer cancel()
		g.compute.Lock()
		defer g.compute.Unlock()
		onStep := func(ev gen.Step) error {
			var img *image.NRGBA
			if ev.Preview != nil {
				var err error
				if img, err = core.ToImage(*ev.Preview, 0); err != nil {
					return err
				}
			}
			ev.Preview = nil // the state keeps the image, not the tensor
			applied := make(chan struct{})
			if !g.post(ctx, func() { g.st.OnStep(id, ev, img); close(applied) }) {
				return context.Canceled
			}
			if g.cfg.SyncScales {
				select {
				case <-applied:
				case <-ctx.Done():
					return ctx.Err()
				case <-g.quit:
					return context.Canceled
				}
			}
			if g.cfg.StepHook != nil {
				g.cfg.StepHook(ev.Index)
			}
			return nil
		}
		// A panicking backend ends the run with an error instead of taking the program down.
		res, err := gen.Safely(func() (*gen.Result, error) { return run(ctx, req, onStep) })
		if g.cfg.RunError != nil {
			err = g.cfg.RunError(err)
		}
		var tokens [][]int
		if res != nil {
			tokens = res.Tokens
		}
		g.post(context.Background(), func() {
			if err == nil {
				g.last = res
			}
			g.st.OnDone(id, tokens, err)
			if g.cfg.Finished != nil {
				g.cfg.Finished(tokens, err)
			}
			// Screenshot mode has nobody to press Generate: after a device loss it reopens the GPU
			// (reopenIfLost below) and, once, runs the autostart run again for the screenshot; a
			// second loss, like any other error, ends the game with the error.
			if g.cfg.Screenshot != "" && err != nil {
				if g.st.Lost != nil && g.cfg.AutoStart && !g.shotRetried {
					g.shotRetried, g.autoDone = true, false
				} else {
					g.exitErr = err
					g.shotDone = true
					return
				}
			}
			if g.cfg.Screenshot != "" && g.cfg.Depth > 0 && err == nil {
				if g.st.Model.Depths == 0 {
					g.exitErr = errors.New("this model has no code depths to show (-depth)")
					g.shotDone = true
					return
				}
				if cmd := g.st.SetDepth(g.cfg.Depth); cmd.Kind == uistate.ShowDepth {
					g.showDepth(id, cmd.Depth)
				}
			}
			g.reopenIfLost()
		})
	}()
}

// DeviceLost tells the game that its backend's GPU device is gone (err wraps core.ErrDeviceLost), e.g.
// from the platform's device-lost notification while no run is in flight: the state names the loss and
// the game calls Config.Load again, which must then open a new backend (keeping the weights it has). A
// loss during a run or a load is taken at its end. Safe from any goroutine; it does not block.
func (g *Game) DeviceLost(err error) {
	go g.post(context.Background(), func() {
		g.st.OnDeviceLost(err)
		g.reopenIfLost()
	})
}

// reopenIfLost loads again (Config.Load: a new backend, the same weights) when the state stopped for a
// lost device.
func (g *Game) reopenIfLost() {
	if g.st.Phase == uistate.Stopped && g.st.Lost != nil {
		g.do(uistate.ActGenerate) // in Stopped, Generate is Load
	}
}

// Update applies what the goroutines sent, then the user's input.
func (g *Game) Update() error {
	if g.shotDone {
		return ebiten.Termination
	}
	for {
		select {
		case f := <-g.inbox:
			f()
			continue
		default:
		}
		break
	}
	for _, a := range g.input() {
		g.do(a)
	}
	return nil
}

// Layout keeps the canvas at its logical size; the window scales it.
func (g *Game) Layout(int, int) (int, int) { return uistate.Width, uistate.Height }

// Draw draws the state, then takes the screenshot when one is due.
func (g *Game) Draw(screen *ebiten.Image) {
	g.draw(screen)
	if g.cfg.Screenshot == "" || g.shotDone || g.st.Run == nil || !g.st.Run.Finished || !g.depthReady() {
		return
	}
	g.shotDone = true
	pix := make([]byte, 4*uistate.Width*uistate.Height)
	screen.ReadPixels(pix)
	img := &image.RGBA{Pix: pix, Stride: 4 * uistate.Width, Rect: image.Rect(0, 0, uistate.Width, uistate.Height)}
	if err := writePNG(g.cfg.Screenshot, img); err != nil {
		g.exitErr = err
	}
}

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
