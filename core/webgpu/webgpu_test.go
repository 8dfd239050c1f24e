package webgpu

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/webvar/webvar/core/backendtest"
)

// newTestBackend opens the native adapter. The test must run on Vulkan (lavapipe in CI) unless
// WEBVAR_WGPU_BACKEND names another API: a silent fallback to OpenGL would test the wrong thing.
func newTestBackend(t *testing.T) *Backend {
	t.Helper()
	b, err := openTestBackend()
	if err != nil {
		t.Fatalf("%v (CI installs mesa-vulkan-drivers for lavapipe)", err)
	}
	t.Cleanup(b.Close)
	b.guard = 64 // every op output gets a checked guard region
	t.Logf("adapter: %v", b.Adapter())
	if want := os.Getenv("WEBVAR_WGPU_BACKEND"); (want == "" || want == "vulkan") && runtime.GOOS == "linux" &&
		!strings.EqualFold(b.Adapter().Backend, "vulkan") {
		t.Fatalf("adapter backend %q, want vulkan", b.Adapter().Backend)
	}
	return b
}

func TestCrossBackend(t *testing.T) {
	backendtest.Run(t, newTestBackend(t))
}
