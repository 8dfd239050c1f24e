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
	b, closeBackend, err := newBackend(f.backend, f.threads, stderr)
	if err != nil {
		return err
	}
	defer closeBackend()
	g, err := ui.New(ui.Config{
		Backend: b,
		Settings: uistate.Settings{Class: f.class, Seed: f.seed, CFG: f.cfg, TopK: f.topK, TopP: f.topP,
			MoreSmooth: f.moreSmooth},
		AutoStart:  f.autostart,
		Screenshot: f.screenshot,
		Save:       ui.SaveToDir(f.saveDir),
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// Loading runs beside the window so that the download progress is drawn while it happens.
	go func() {
		p, names, err := f.model.open(ctx, b, func(p weights.Progress) { g.Progress(p.BytesDone, p.BytesTotal) })
		if err == nil {
			err = checkClass(p, f.class)
		}
		g.Loaded(p, names, err)
	}()
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
