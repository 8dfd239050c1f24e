package fashionrq_test

import (
	"testing"

	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/internal/demotest"
	"github.com/webvar/webvar/weights/fashionrq"
)

// The embedded demo model loads as RQ with the defaults its quality was measured at, generates every
// class, and makes the same codes for the same seed.
func TestDemoModelGenerates(t *testing.T) {
	demotest.Check(t, fashionrq.FS(), demotest.Want{Family: "rq", Classes: 10, Shape: "[1, 3, 32, 32]",
		Defaults: gen.Settings{"top-k": "4", "temperature": "1", "top-p": "1"}})
}
