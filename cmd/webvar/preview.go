//go:build preview

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/ui"
	"github.com/webvar/webvar/ui/uistate"
	"github.com/webvar/webvar/weights"
)

// The preview window links ebiten, whose package initialisation opens the X11 display and panics
// without one (ebiten issue #1858). Linking it into every webvar would break generate, convert and serve
// on headless machines and every test of this package without Xvfb, so the window is built only with
// -tags preview (preview_nowindow.go answers otherwise).

func runPreview(args []string, stdout, stderr io.Writer) error {
	f, err := parsePreview(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	backend := f.backend
	if backend == "auto" {
		backend = "webgpu"
	}
	b, closeBackend, err := newBackend(backend, f.threads, stderr)
	notice := ""
	if f.backend == "auto" && errors.Is(err, webgpu.ErrNoAdapter) {
		notice = fmt.Sprintf("no WebGPU adapter (%v): computing on the CPU", err)
		fmt.Fprintln(stderr, notice)
		b, closeBackend, err = newBackend("cpu", f.threads, stderr)
	}
	if err != nil {
		return err
	}
	defer closeBackend()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// The model's own sampling defaults (its manifest, read before the download) fill the unset flags.
	info, err := f.model.peek(ctx)
	if err != nil {
		return err
	}
	stop() // from here Ctrl-C ends the program; the window's Cancel stops the download
	f.sampling.apply(info.Sampling)
	s := f.sampling
	g, err := ui.New(ui.Config{
		Backend: b,
		Notice:  notice,
		// Loading runs beside the window so that the download progress is drawn while it happens.
		Load: func(ctx context.Context, progress func(done, total int64)) (*varmodel.Pipeline, []string, error) {
			p, info, err := f.model.open(ctx, b, func(p weights.Progress) { progress(p.BytesDone, p.BytesTotal) })
			if err == nil {
				err = checkClass(p, f.class)
			}
			return p, info.ClassNames, err
		},
		Settings: uistate.Settings{Class: f.class, Seed: f.seed, CFG: s.cfg, TopK: s.topK, TopP: s.topP,
			MoreSmooth: s.moreSmooth},
		AutoStart:  f.autostart,
		Screenshot: f.screenshot,
		Save:       ui.SaveToDir(f.saveDir),
	})
	if err != nil {
		return err
	}
	if err := ui.Run(g, "webvar preview ("+b.Name()+")"); err != nil {
		return err
	}
	if f.screenshot != "" {
		fmt.Fprintf(stdout, "wrote %s\n", f.screenshot)
	}
	return nil
}

// checkClass rejects a -class the model does not have (the UI would otherwise clamp it silently).
func checkClass(p *varmodel.Pipeline, class int) error {
	if n := p.VAR.Config().Classes; class >= n {
		return usageError{fmt.Sprintf("-class %d: this model has classes 0..%d", class, n-1)}
	}
	return nil
}
