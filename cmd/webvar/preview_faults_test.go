package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The native preview on `-backend webgpu` whose device is lost during its first generation
// (WEBVAR_TEST_LOSE_DEVICE=step:N, after scale N+1 of var-tiny's four): the window names the loss on
// stderr, reopens the GPU (a second "GPU:" line), generates again and, promptly and with exit 0, saves the
// screenshot, whose image region holds `webvar generate`'s image for the same request (issue 19: a lost
// device gives a named error, never a hang).
func TestPreviewWindowDeviceLost(t *testing.T) {
	display := startXvfb(t)
	if testing.Short() {
		t.Skip("window test skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin := buildPreview(ctx, t, tmp)
	wdir := convertVarTiny(t, tmp)
	ref := filepath.Join(tmp, "generate.png")
	if rc, _, stderr := runCLI(t, append([]string{"generate", "-weights", wdir, "-backend", "webgpu", "-out", ref}, varTinyRequest...)...); rc != 0 {
		t.Fatalf("generate: exit %d: %s", rc, stderr)
	}
	for _, step := range []string{"0", "2"} {
		t.Run("step"+step, func(t *testing.T) {
			spec := "step:" + step
			shot := filepath.Join(tmp, "preview_lost"+step+".png")
			args := append([]string{"preview", "-weights", wdir, "-backend", "webgpu", "-autostart", "-screenshot", shot}, varTinyRequest...)
			// A recovered run takes seconds on lavapipe; a hang is killed here.
			rctx, rcancel := context.WithTimeout(ctx, 40*time.Second)
			defer rcancel()
			cmd := exec.CommandContext(rctx, bin, args...)
			cmd.Env = append(os.Environ(), "DISPLAY="+display, "WEBVAR_TEST_LOSE_DEVICE="+spec)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.WaitDelay = 5 * time.Second
			start := time.Now()
			err := cmd.Run()
			t.Logf("preview run %.1f s", time.Since(start).Seconds())
			if rctx.Err() != nil {
				t.Fatalf("webvar %s with WEBVAR_TEST_LOSE_DEVICE=%s hung (killed after %v):\n%s", strings.Join(args, " "), spec,
					time.Since(start).Round(time.Second), out.String())
			}
			if err != nil {
				t.Fatalf("webvar %s with WEBVAR_TEST_LOSE_DEVICE=%s: %v\n%s", strings.Join(args, " "), spec, err, out.String())
			}
			log := out.String()
			if want := "GPU device lost: test: WEBVAR_TEST_LOSE_DEVICE=" + spec + ": reopening the GPU"; !strings.Contains(log, want) {
				t.Fatalf("the window did not name the loss (want a line with %q):\n%s", want, log)
			}
			if n := strings.Count(log, "GPU: "); n != 2 {
				t.Fatalf("%d \"GPU: \" lines, want 2 (the device opened, then reopened after the loss):\n%s", n, log)
			}
			if dir := os.Getenv("WEBVAR_ARTIFACTS"); dir != "" {
				if data, err := os.ReadFile(shot); err == nil {
					os.WriteFile(filepath.Join(dir, "preview_lost"+step+".png"), data, 0o644)
				}
			}
			compareScreenshot(t, readPNG(t, shot), readPNG(t, ref), 1)
		})
	}
}
