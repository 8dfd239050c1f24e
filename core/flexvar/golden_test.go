package flexvar_test

import (
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/flexvar/flexvartest"
	"github.com/webvar/webvar/internal/testutil"
)

// Every golden of testdata/flexvar-tiny (and of each WEBVAR_FIXTURES FlexVAR directory) on the CPU
// backend as users run it and on its plain-Go reference.
func TestFlexVARFixtureCPU(t *testing.T) {
	for _, f := range testutil.Fixtures(t, "flexvar") {
		t.Run(f.Name, func(t *testing.T) {
			for _, v := range []struct {
				name string
				new  func(int) *cpu.Backend
			}{{"fast", cpu.New}, {"reference", cpu.NewReference}} {
				t.Run(v.name, func(t *testing.T) { flexvartest.Check(t, f, v.new(0)) })
			}
			if !t.Failed() {
				t.Logf("fixture %s: ok", f.Name)
				println("fixture " + f.Name + ": ok")
			}
		})
	}
}
