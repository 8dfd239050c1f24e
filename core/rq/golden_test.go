package rq_test

import (
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/rq/rqtest"
	"github.com/webvar/webvar/internal/testutil"
)

// Every golden of testdata/rq-tiny (and of each WEBVAR_FIXTURES RQ directory) on the CPU backend as users
// run it and on its plain-Go reference.
func TestRQFixtureCPU(t *testing.T) {
	for _, f := range testutil.Fixtures(t, "rq") {
		t.Run(f.Name, func(t *testing.T) {
			for _, v := range []struct {
				name string
				new  func(int) *cpu.Backend
			}{{"fast", cpu.New}, {"reference", cpu.NewReference}} {
				t.Run(v.name, func(t *testing.T) { rqtest.Check(t, f, v.new(0)) })
			}
			if !t.Failed() {
				t.Logf("fixture %s: ok", f.Name)
				println("fixture " + f.Name + ": ok")
			}
		})
	}
}
