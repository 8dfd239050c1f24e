package varmodel_test

import (
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/varmodel/vartest"
	"github.com/webvar/webvar/internal/testutil"
)

// The end-to-end goldens of testdata/var-tiny and of each WEBVAR_FIXTURES VAR directory on the CPU
// backend as users run it and on its plain-Go reference.
func TestVARFixtureCPU(t *testing.T) {
	for _, f := range testutil.Fixtures(t, "var") {
		t.Run(f.Name, func(t *testing.T) {
			for _, v := range []struct {
				name string
				new  func(int) *cpu.Backend
			}{{"fast", cpu.New}, {"reference", cpu.NewReference}} {
				t.Run(v.name, func(t *testing.T) {
					vartest.Check(t, f, v.new(0))
					t.Run("edit", func(t *testing.T) { vartest.CheckEdit(t, f, v.new(0)) })
				})
			}
			if !t.Failed() {
				println("fixture " + f.Name + ": ok")
			}
		})
	}
}
