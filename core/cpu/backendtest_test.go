package cpu_test

import (
	"testing"

	"github.com/webvar/webvar/core/backendtest"
	"github.com/webvar/webvar/core/cpu"
)

// TestCrossBackendFastPaths runs the cross-backend op table (core/backendtest, the table the WebGPU
// backend runs natively and in the browser) on each fast-path configuration of this backend against the
// plain reference, so that the fast code is held to the same cases and tolerances as the GPU kernels.
// CI's `-tags purego` run of this package covers the configurations of machines without the assembly.
func TestCrossBackendFastPaths(t *testing.T) {
	for _, tb := range cpu.TableBackends() {
		t.Run(tb.Name, func(t *testing.T) {
			t.Logf("backend %s", tb.Backend.Name())
			backendtest.Run(t, tb.Backend)
		})
	}
}
