package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every embedded demo model runs by name (-demo), without a weights directory on disk (what a user of an
// installed binary has), and an unknown name is a usage error listing the names.
func TestGenerateDemoModels(t *testing.T) {
	for _, name := range demoNames() {
		out := filepath.Join(t.TempDir(), name+".png")
		args := []string{"generate", "-demo", name, "-class", "3", "-seed", "1", "-backend", "cpu", "-out", out}
		if strings.Contains(name, "mar") {
			args = append(args, "-iters", "2", "-diffusion-steps", "5")
		}
		rc, _, stderr := runCLI(t, args...)
		if rc != 0 {
			t.Fatalf("%s: exit %d: %s", name, rc, stderr)
		}
		if !strings.Contains(stderr, "embedded demo model "+name) {
			t.Errorf("%s: stderr does not name the model: %.300s", name, stderr)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil || img.Bounds().Dx() != 32 {
			t.Fatalf("%s: %v, %v", name, err, img)
		}
	}
	rc, _, stderr := runCLI(t, "generate", "-demo", "fashion-nope", "-out", filepath.Join(t.TempDir(), "x.png"))
	if rc != 2 || !strings.Contains(stderr, "fashionflexvar") {
		t.Errorf("unknown demo: exit %d, %s", rc, stderr)
	}
	if rc, _, stderr := runCLI(t, "serve", "-demo", "fashion-nope"); rc != 2 || !strings.Contains(stderr, "no such demo model") {
		t.Errorf("serve, unknown demo: exit %d, %s", rc, stderr)
	}
}
