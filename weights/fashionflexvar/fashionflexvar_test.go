package fashionflexvar_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/internal/demotest"
	"github.com/webvar/webvar/weights/fashionflexvar"
)

// The embedded demo model loads as FlexVAR with its recorded defaults, and generates every class at
// its default schedule and at other schedules and aspects (32x32 at the default; any grid it is asked
// for), the same image for the same seed.
func TestDemoModelGenerates(t *testing.T) {
	ctx := context.Background()
	m := demotest.Check(t, fashionflexvar.FS(), demotest.Want{Family: "flexvar", Classes: 10, Shape: "[1, 3, 32, 32]",
		Defaults: gen.Settings{"cfg": "1", "top-k": "20", "top-p": "0.9"}})
	a, err := m.Generate(ctx, gen.Request{Labels: []int{7}, Seed: 3, Settings: gen.Settings{"schedule": "1,2,4,6,8", "aspect": "4:3"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Generate(ctx, gen.Request{Labels: []int{7}, Seed: 3, Settings: gen.Settings{"schedule": "1,2,4,6,8", "aspect": "4:3"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.Tokens) != fmt.Sprint(b.Tokens) || fmt.Sprint(a.Images.Shape) != "[1, 3, 28, 36]" {
		t.Fatalf("4:3: tokens differ between identical requests, or image %v", a.Images.Shape)
	}
}
