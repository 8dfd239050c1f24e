//go:build !js

// The fixture files are read from testdata, which a browser test binary cannot reach.

package webgpu

import (
	"testing"

	"github.com/webvar/webvar/core/rq/rqtest"
	"github.com/webvar/webvar/internal/testutil"
)

// Every golden of testdata/rq-tiny (and of each WEBVAR_FIXTURES RQ directory) on the GPU: the same checks
// as the CPU's (core/rq/rqtest): the RQ-VAE, the teacher-forced transformer, the greedy cached sampler and
// its prefill of kept positions.
func TestRQFixtureOnWebGPU(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	for _, f := range testutil.Fixtures(t, "rq") {
		t.Run(f.Name, func(t *testing.T) {
			rqtest.Check(t, f, b)
			if !t.Failed() {
				println("fixture " + f.Name + ": ok (webgpu)")
			}
		})
	}
}

// The same checks with a guard region after every op output: the RQ ops' shapes (one-row GEMVs, the
// depth slices, the head's 1-token cache steps) write nothing out of bounds.
func TestRQFixtureOnWebGPUGuarded(t *testing.T) {
	b := newTestBackend(t)
	f := testutil.Fixtures(t, "rq")[0]
	rqtest.Check(t, f, b)
}
