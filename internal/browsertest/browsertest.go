// Package browsertest runs Go packages' tests inside headless Chromium: it compiles a package's tests with
// GOOS=js GOARCH=wasm, serves them with a small harness page on 127.0.0.1 and drives Chromium (WebGPU on
// SwiftShader: --enable-unsafe-webgpu) through the DevTools protocol until the tests exit.
package browsertest

import (
	"context"
	_ "embed"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

//go:embed harness.html
var harness []byte

// Chromium returns the path of a Chromium binary, or "" if none is installed.
func Chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// AllocatorOptions are the flags webvar's browser tests start Chromium with: headless, a fresh profile,
// none of the background traffic a closed network refuses, and WebGPU (SwiftShader without a GPU) when
// webgpu is set.
func AllocatorOptions(chrome, profile string, webgpu bool) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("enable-unsafe-webgpu", webgpu),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
	}
}

// RequireChromium returns the Chromium binary, or skips t when none is installed, unless
// WEBVAR_REQUIRE_BROWSER=1 (CI), where a missing browser fails the test instead.
func RequireChromium(t testing.TB) string {
	t.Helper()
	chrome := Chromium()
	if chrome == "" {
		if os.Getenv("WEBVAR_REQUIRE_BROWSER") == "1" {
			t.Fatal("WEBVAR_REQUIRE_BROWSER=1 but no Chromium is installed (apt-get install chromium)")
		}
		t.Skip("no Chromium installed (apt-get install chromium); CI runs this test")
	}
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	return chrome
}

// NoWebGPU ends a test whose page came up without WebGPU (why says what the page reported): a skip on a
// developer's machine whose Chromium has no WebGPU, a failure under WEBVAR_REQUIRE_BROWSER=1 (CI), whose
// Chromium runs WebGPU on SwiftShader, so a WebGPU test there can never pass by skipping.
func NoWebGPU(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("WEBVAR_REQUIRE_BROWSER") == "1" {
		t.Fatalf("WEBVAR_REQUIRE_BROWSER=1 but the page is not on WebGPU (%s)", why)
	}
	t.Skipf("the page is not on WebGPU (%s)", why)
}

// Build compiles pkg's tests for the browser into dir/test.wasm and copies the matching wasm_exec.js.
func Build(ctx context.Context, pkg, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", filepath.Join(dir, "test.wasm"), pkg)
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s for js/wasm: %v\n%s", pkg, err, out)
	}
	root, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return err
	}
	js, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(root)), "lib", "wasm", "wasm_exec.js"))
	if err != nil {
		return fmt.Errorf("wasm_exec.js: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "wasm_exec.js"), js, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.html"), harness, 0o644)
}

// Result is what a browser test run printed and how it exited.
type Result struct {
	Exit   int
	Output string
}

// Run serves dir and runs its test.wasm in headless Chromium with the given test flags.
func Run(ctx context.Context, chrome, dir string, args []string, timeout time.Duration) (Result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, err
	}
	mux := http.NewServeMux()
	fs := http.FileServer(http.Dir(dir))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".wasm") {
			w.Header().Set("Content-Type", "application/wasm")
		}
		fs.ServeHTTP(w, r)
	}))
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()

	profile, err := os.MkdirTemp("", "webvar-chromium-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(profile)
	opts := AllocatorOptions(chrome, profile, true)
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	cctx, cancelC := chromedp.NewContext(actx)
	defer cancelC()
	tctx, cancelT := context.WithTimeout(cctx, timeout)
	defer cancelT()

	q := url.Values{}
	for _, a := range args {
		q.Add("arg", a)
	}
	page := fmt.Sprintf("http://%s/index.html?%s", ln.Addr(), q.Encode())
	var res Result
	if _, err := chromedp.Run(tctx, chromedp.Navigate(page)); err != nil {
		return res, fmt.Errorf("chromium: open %s: %w", page, err)
	}
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool]("window.testDone === true",
		// No poll timeout of its own (the default is 30 s): tctx bounds the wait.
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(0))); err != nil {
		// Still collect what the tests printed so far.
		res.Output, _ = chromedp.Run(cctx, chromedp.Evaluate[string]("(window.testOutput ?? '') + ''"))
		return res, fmt.Errorf("chromium: waiting for the tests: %w", err)
	}
	if res.Exit, err = chromedp.Run(tctx, chromedp.Evaluate[int]("window.testExit ?? 0")); err != nil {
		return res, fmt.Errorf("chromium: %w", err)
	}
	if res.Output, err = chromedp.Run(tctx, chromedp.Evaluate[string]("window.testOutput")); err != nil {
		return res, fmt.Errorf("chromium: %w", err)
	}
	return res, nil
}
