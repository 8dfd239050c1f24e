package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/webgpu"
	"github.com/webvar/webvar/internal/testutil"
)

// `webvar generate -backend webgpu` on a device lost before the generation or after its first step
// prints the named error ("GPU device lost" and why) and exits 1, promptly and without writing an image,
// for a family that reads tokens back every step (VAR) and one that does not until the end (MAR).
func TestGenerateDeviceLost(t *testing.T) {
	models := []struct {
		name string
		args []string
		step string // the first step's status line
	}{
		{"var", []string{"-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"), "-patch-nums", "1,2,3,4"}, "scale 1/4"},
		{"mar", []string{"-var", filepath.Join(testutil.Root(), "testdata", "mar-tiny", "mar.pth"),
			"-vae", filepath.Join(testutil.Root(), "testdata", "mar-tiny", "vae.pth"), "-iters", "4", "-diffusion-steps", "5"}, "iteration 1/4"},
	}
	for _, m := range models {
		for _, when := range []struct {
			name string
			step int // generateHook's step at which the device is lost: -1 before the generation
		}{{"before", -1}, {"after the first step", 0}} {
			t.Run(m.name+"/"+when.name, func(t *testing.T) {
				var lostOn *webgpu.Backend
				hook := func(b core.Backend, step int) {
					if step == when.step {
						lostOn = b.(*webgpu.Backend)
						lostOn.DeviceLost("test: " + when.name)
					}
				}
				out := filepath.Join(t.TempDir(), "img.png")
				t0 := time.Now()
				// As run() reports a command's error: "webvar generate: ...", exit 1.
				var errb bytes.Buffer
				rc := 0
				if err := generateWithHook(append([]string{"-backend", "webgpu", "-class", "1", "-seed", "3", "-out", out}, m.args...),
					io.Discard, &errb, hook); err != nil {
					fmt.Fprintf(&errb, "webvar generate: %v\n", err)
					rc = 1
				}
				stderr := errb.String()
				if d := time.Since(t0); d > 60*time.Second {
					t.Errorf("took %v", d)
				}
				if lostOn == nil {
					t.Fatalf("the hook never ran at step %d (exit %d): %s", when.step, rc, stderr)
				}
				want := "webvar generate: "
				if i := strings.Index(stderr, want); rc != 1 || i < 0 || !strings.Contains(stderr[i:], "GPU device lost: test: "+when.name) {
					t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and a line %q naming the loss", rc, stderr, want+"... GPU device lost: test: "+when.name)
				}
				if ran := strings.Contains(stderr, m.step); ran != (when.step >= 0) {
					t.Fatalf("first step reported: %v, stderr:\n%s", ran, stderr)
				}
				if _, err := os.Stat(out); !os.IsNotExist(err) {
					t.Fatalf("an image was written after the loss (%v)", err)
				}
			})
		}
	}
}
