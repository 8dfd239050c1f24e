// Package demotest holds the checks every embedded demo model's test makes: it opens as its family with
// its class names and the sampling defaults it was converted with, generates every class at the
// expected size, and draws the same result for the same seed.
package demotest

import (
	"context"
	"fmt"
	"io/fs"
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/loader/model"
)

// Want is what a demo model must be.
type Want struct {
	Family   string
	Classes  int
	Defaults gen.Settings // settings recorded at conversion, by name, as their text defaults
	Shape    string       // image shape at the default settings, e.g. "[1, 3, 32, 32]"
	// Fast overrides settings for the per-class runs and the determinism check (MAR's fewer steps).
	Fast gen.Settings
}

// Check opens the demo model in fsys on the CPU and checks it against w; it returns the model for the
// family's own further checks.
func Check(t *testing.T, fsys fs.FS, w Want) *model.Model {
	t.Helper()
	ctx := context.Background()
	m, err := model.OpenFS(ctx, fsys, model.Options{Backend: cpu.New(0)})
	if err != nil {
		t.Fatal(err)
	}
	if info := m.Info(); info.Family != w.Family || info.Classes != w.Classes || len(m.ClassNames) != w.Classes {
		t.Fatalf("info %+v, names %v; want family %s, %d classes with names", info, m.ClassNames, w.Family, w.Classes)
	}
	missing := map[string]bool{}
	for name := range w.Defaults {
		missing[name] = true
	}
	for _, s := range m.Settings() {
		if want, ok := w.Defaults[s.Name]; ok {
			if s.Default != want {
				t.Errorf("setting %s: default %q, want %q (as converted)", s.Name, s.Default, want)
			}
			delete(missing, s.Name)
		}
	}
	if len(missing) > 0 {
		t.Errorf("settings %v missing", missing)
	}
	for c := 0; c < w.Classes; c++ {
		res, err := m.Generate(ctx, gen.Request{Labels: []int{c}, Seed: 1, Settings: w.Fast}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := fmt.Sprint(res.Images.Shape); s != w.Shape {
			t.Fatalf("class %d: image %v, want %s", c, s, w.Shape)
		}
	}
	run := func() string {
		res, err := m.Generate(ctx, gen.Request{Labels: []int{w.Classes - 1}, Seed: 3, Settings: w.Fast}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(res.Tokens, res.LatentRows())
	}
	if a, b := run(), run(); a != b || len(a) < 20 {
		t.Fatalf("identical requests differ:\n%.200s\n%.200s", a, b)
	}
	return m
}
