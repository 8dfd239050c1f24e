package fashionmar_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/loader/model"
	"github.com/webvar/webvar/weights/fashionmar"
)

// The embedded demo model loads as MAR with the defaults it was converted with (the settings its quality
// was measured at), generates every class, and makes the same latents for the same seed.
func TestDemoModelGenerates(t *testing.T) {
	ctx := context.Background()
	m, err := model.OpenFS(ctx, fashionmar.FS(), model.Options{Backend: cpu.New(0)})
	if err != nil {
		t.Fatal(err)
	}
	if info := m.Info(); info.Family != "mar" || info.Classes != 10 || len(m.ClassNames) != 10 {
		t.Fatalf("info %+v, names %v", info, m.ClassNames)
	}
	want := map[string]string{"iters": "8", "diffusion-steps": "250", "cfg": "3", "temperature": "1"}
	for _, s := range m.Settings() {
		if w, ok := want[s.Name]; ok {
			if s.Default != w {
				t.Errorf("setting %s: default %q, want %q (as converted)", s.Name, s.Default, w)
			}
			delete(want, s.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("settings %v missing", want)
	}
	fast := gen.Settings{"iters": "4", "diffusion-steps": "10"}
	for c := 0; c < 10; c++ {
		res, err := m.Generate(ctx, gen.Request{Labels: []int{c}, Seed: 1, Settings: fast}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := res.Images.Shape; fmt.Sprint(s) != "[1, 3, 32, 32]" {
			t.Fatalf("class %d: image %v", c, s)
		}
	}
	run := func() string {
		res, err := m.Generate(ctx, gen.Request{Labels: []int{7}, Seed: 3, Settings: fast}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(res.LatentRows())
	}
	if a, b := run(), run(); a != b || len(a) < 100 {
		t.Fatalf("latents differ between identical requests:\n%.200s\n%.200s", a, b)
	}
}
