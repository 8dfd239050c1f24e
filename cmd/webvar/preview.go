//go:build preview

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
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
	// Load replaces a backend whose device was lost (the game loads again after a loss, and no run is in
	// flight then): mu guards b and closeBackend, which Load changes on its goroutine.
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		closeBackend()
	}()
	reopenIfLost := func() (core.Backend, error) {
		mu.Lock()
		defer mu.Unlock()
		if wb, ok := b.(*webgpu.Backend); ok && wb.Lost() != nil {
			fmt.Fprintf(stderr, "%v: reopening the GPU\n", wb.Lost())
			closeBackend()
			b, closeBackend = nil, func() {}
		}
		if b == nil {
			nb, nclose, err := newBackend("webgpu", f.threads, stderr)
			if err != nil {
				return nil, fmt.Errorf("reopening the GPU: %w", err)
			}
			b, closeBackend = nb, nclose
		}
		return b, nil
	}
	stepHook, err := loseDeviceHook(os.Getenv("WEBVAR_TEST_LOSE_DEVICE"), func() core.Backend {
		mu.Lock()
		defer mu.Unlock()
		return b
	})
	if err != nil {
		return err
	}
	var editImg image.Image
	var editSpec uistate.EditSpec
	if f.image != "" {
		fh, err := os.Open(f.image)
		if err != nil {
			return err
		}
		editImg, _, err = image.Decode(io.LimitReader(fh, maxEditPixels))
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: not an image this command reads (PNG, JPEG, GIF): %w", f.image, err)
		}
		editSpec = uistate.EditSpec{Mode: uistate.EditMode(f.editMode), K: f.keep, NullClass: f.noClass}
		if f.box != "" {
			editSpec.Box, _ = parseBox(f.box)
		}
	}
	values := f.settings()
	if f.model.varPath != "" {
		delete(values, "schedule") // -patch-nums of a VAR checkpoint: given to the loader below
	}
	g, err := ui.New(ui.Config{
		Backend: b,
		Notice:  notice,
		// Loading runs beside the window so that the download progress is drawn while it happens.
		Load: func(ctx context.Context, progress func(done, total int64)) (gen.Generator, []string, error) {
			cur, err := reopenIfLost()
			if err != nil {
				return nil, nil, err
			}
			p, info, err := f.model.openGenerator(ctx, cur, func(p weights.Progress) { progress(p.BytesDone, p.BytesTotal) })
			if err == nil {
				err = checkClass(p, f.class)
			}
			return p, info.ClassNames, err
		},
		Settings:   uistate.Settings{Class: f.class, Seed: f.seed, Values: values},
		AutoStart:  f.autostart,
		Screenshot: f.screenshot,
		Depth:      f.depth,
		Save:       ui.SaveToDir(f.saveDir),
		EditImage:  editImg,
		Edit:       editSpec,
		StepHook:   stepHook,
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

// loseDeviceHook is the test hook behind WEBVAR_TEST_LOSE_DEVICE=step:N (preview_faults_test.go), nil when it
// is unset: the first time a generation reaches step N (0-based, after the step is shown) its WebGPU
// device is declared lost, as a real loss could strike, so that a test sees the window name the loss,
// reopen the GPU and generate again. backend is the backend in use then.
func loseDeviceHook(spec string, backend func() core.Backend) (func(step int), error) {
	if spec == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(spec, "step:"))
	if !strings.HasPrefix(spec, "step:") || err != nil || n < 0 {
		return nil, fmt.Errorf("WEBVAR_TEST_LOSE_DEVICE=%q: want step:N with N >= 0", spec)
	}
	if _, ok := backend().(*webgpu.Backend); !ok {
		return nil, fmt.Errorf("WEBVAR_TEST_LOSE_DEVICE needs the webgpu backend, not %s", backend().Name())
	}
	var once sync.Once
	return func(step int) {
		if step == n {
			once.Do(func() {
				if wb, ok := backend().(*webgpu.Backend); ok {
					wb.DeviceLost("test: WEBVAR_TEST_LOSE_DEVICE=" + spec)
				}
			})
		}
	}, nil
}

// checkClass rejects a -class the model does not have (the UI would otherwise clamp it silently).
func checkClass(g gen.Generator, class int) error {
	if n := g.Info().Classes; class >= n {
		return usageError{fmt.Sprintf("-class %d: this model has classes 0..%d", class, n-1)}
	}
	return nil
}
