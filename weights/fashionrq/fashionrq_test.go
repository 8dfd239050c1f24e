package fashionrq_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/loader/model"
	"github.com/webvar/webvar/weights/fashionrq"
)

// The embedded demo model loads as RQ with its class names and the defaults it was converted with (the
// settings its quality was measured at), generates every class, and makes the same codes for the same seed.
func TestDemoModelGenerates(t *testing.T) {
	ctx := context.Background()
	m, err := model.OpenFS(ctx, fashionrq.FS(), model.Options{Backend: cpu.New(0)})
	if err != nil {
		t.Fatal(err)
	}
	if info := m.Info(); info.Family != "rq" || info.Classes != 10 || len(m.ClassNames) != 10 {
		t.Fatalf("info %+v, names %v", info, m.ClassNames)
	}
	want := map[string]string{"top-k": "4", "temperature": "1", "top-p": "1"}
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
	for c := 0; c < 10; c++ {
		res, err := m.Generate(ctx, gen.Request{Labels: []int{c}, Seed: 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := res.Images.Shape; fmt.Sprint(s) != "[1, 3, 32, 32]" {
			t.Fatalf("class %d: image %v", c, s)
		}
	}
	run := func() string {
		res, err := m.Generate(ctx, gen.Request{Labels: []int{7}, Seed: 3}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(res.Tokens)
	}
	if a, b := run(), run(); a != b || len(a) < 20 {
		t.Fatalf("codes differ between identical requests:\n%.200s\n%.200s", a, b)
	}
}
