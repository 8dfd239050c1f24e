package fashionmar_test

import (
	"testing"

	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/internal/demotest"
	"github.com/webvar/webvar/weights/fashionmar"
)

// The embedded demo model loads as MAR with the defaults its quality was measured at, generates every
// class, and makes the same latents for the same seed (fewer steps than its defaults, for time).
func TestDemoModelGenerates(t *testing.T) {
	demotest.Check(t, fashionmar.FS(), demotest.Want{Family: "mar", Classes: 10, Shape: "[1, 3, 32, 32]",
		Defaults: gen.Settings{"iters": "8", "diffusion-steps": "250", "cfg": "6", "temperature": "1"},
		Fast:     gen.Settings{"iters": "4", "diffusion-steps": "10"}})
}
