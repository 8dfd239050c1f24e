package browsertest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// All tests of core/webgpu (the cross-backend kernel table, guard, lifetime, quantization and error tests;
// the fixture test needs files and is native only), compiled
// with GOOS=js and run in headless Chromium on its WebGPU implementation (SwiftShader without a GPU).
// CI installs Chromium and sets WEBVAR_REQUIRE_BROWSER=1, so there the test cannot skip.
func TestWebGPUKernelsInChromium(t *testing.T) {
	out := runInChromium(t, "github.com/webvar/webvar/core/webgpu", 8*time.Minute)
	if !strings.Contains(out, "OP ") {
		t.Fatal("no kernel comparisons ran in the browser")
	}
	if !strings.Contains(out, "adapter:") {
		t.Fatal("no WebGPU adapter line in the browser output")
	}
}

// The WebGL2 offload of the CPU backend's products (wasm/webgl), for browsers without WebGPU: its tests
// compiled with GOOS=js and run in headless Chromium (WebGL2 on SwiftShader without a GPU).
func TestWebGLOffloadInChromium(t *testing.T) {
	out := runInChromium(t, "github.com/webvar/webvar/wasm/webgl", 4*time.Minute)
	if !strings.Contains(out, "OP linear") || !strings.Contains(out, "WEBGL renderer:") {
		t.Fatal("no WebGL2 product was compared in the browser")
	}
}

// runInChromium builds pkg's tests for GOOS=js, runs them verbosely in headless Chromium and returns
// their output; a build failure, a timeout or a failing test fails t.
func runInChromium(t *testing.T, pkg string, timeout time.Duration) string {
	t.Helper()
	chrome := RequireChromium(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := Build(ctx, pkg, dir); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, chrome, dir, []string{"-test.v"}, timeout)
	if err != nil {
		t.Fatalf("%v\noutput so far:\n%s", err, res.Output)
	}
	t.Logf("browser test output:\n%s", res.Output)
	if res.Exit != 0 || !strings.Contains(res.Output, "\nPASS") {
		t.Fatalf("browser tests failed (exit %d)", res.Exit)
	}
	return res.Output
}
