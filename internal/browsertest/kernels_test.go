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
	chrome := RequireChromium(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := Build(ctx, "github.com/webvar/webvar/core/webgpu", dir); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, chrome, dir, []string{"-test.v"}, 8*time.Minute)
	if err != nil {
		t.Fatalf("%v\noutput so far:\n%s", err, res.Output)
	}
	t.Logf("browser test output:\n%s", res.Output)
	if res.Exit != 0 || !strings.Contains(res.Output, "\nPASS") {
		t.Fatalf("browser tests failed (exit %d)", res.Exit)
	}
	if !strings.Contains(res.Output, "OP ") {
		t.Fatal("no kernel comparisons ran in the browser")
	}
	if !strings.Contains(res.Output, "adapter:") {
		t.Fatal("no WebGPU adapter line in the browser output")
	}
}

// The WebGL2 offload of the CPU backend's products (core/webgl), for browsers without WebGPU: its tests
// compiled with GOOS=js and run in headless Chromium (WebGL2 on SwiftShader without a GPU).
func TestWebGLOffloadInChromium(t *testing.T) {
	chrome := RequireChromium(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := Build(ctx, "github.com/webvar/webvar/core/webgl", dir); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, chrome, dir, []string{"-test.v"}, 4*time.Minute)
	if err != nil {
		t.Fatalf("%v\noutput so far:\n%s", err, res.Output)
	}
	t.Logf("browser test output:\n%s", res.Output)
	if res.Exit != 0 || !strings.Contains(res.Output, "\nPASS") {
		t.Fatalf("browser tests failed (exit %d)", res.Exit)
	}
	if !strings.Contains(res.Output, "OP linear") || !strings.Contains(res.Output, "WEBGL renderer:") {
		t.Fatal("no WebGL2 product was compared in the browser")
	}
}
