//go:build !js

// The fixtures are read from testdata, which a browser test binary cannot reach.

package webgpu

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/core/flexvar/flexvartest"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/mar"
	"github.com/webvar/webvar/core/mar/martest"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/core/rq/rqtest"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/varmodel/vartest"
	"github.com/webvar/webvar/internal/testutil"
)

// faultBound is how long a generation that meets a lost device may take to return: the tiny fixtures
// generate in well under a second on lavapipe, and a hang would otherwise last until the test timeout.
const faultBound = 30 * time.Second

// faultFamily is a fixture generator of one family, with a request of at least three steps.
type faultFamily struct {
	name string
	load func(t *testing.T, b *Backend) gen.Generator
	req  gen.Request
}

func faultFamilies() []faultFamily {
	fixture := func(t *testing.T, family string) testutil.Fixture { return testutil.Fixtures(t, family)[0] }
	return []faultFamily{
		{"var", func(t *testing.T, b *Backend) gen.Generator {
			return vartest.Load(t, fixture(t, "var"), b).Generator(b, varmodel.OfficialSampling)
		}, gen.Request{Labels: []int{1}, Seed: 7}},
		{"flexvar", func(t *testing.T, b *Backend) gen.Generator {
			return flexvartest.Load(t, fixture(t, "flexvar"), b).Generator(b, flexvar.OfficialDefaults)
		}, gen.Request{Labels: []int{1}, Seed: 7, Settings: gen.Settings{"schedule": "1,2,3,4", "top-k": "20"}}},
		{"mar", func(t *testing.T, b *Backend) gen.Generator {
			p, _ := martest.Load(t, fixture(t, "mar"), b)
			return p.Generator(b, mar.OfficialSampling)
		}, gen.Request{Labels: []int{1}, Seed: 7, Settings: gen.Settings{"iters": "4", "diffusion-steps": "5"}}},
		{"rq", func(t *testing.T, b *Backend) gen.Generator {
			return rqtest.Load(t, fixture(t, "rq"), b).Generator(b, rq.Defaults{})
		}, gen.Request{Labels: []int{1}, Seed: 7}},
	}
}

// generateBounded runs g.Generate and fails the test if it takes longer than faultBound or panics.
func generateBounded(t *testing.T, g gen.Generator, req gen.Request, onStep func(gen.Step) error) (*gen.Result, error) {
	t.Helper()
	type result struct {
		res *gen.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- result{err: fmt.Errorf("panic: %v\n%s", r, debug.Stack())}
			}
		}()
		res, err := g.Generate(context.Background(), req, onStep)
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && strings.HasPrefix(r.err.Error(), "panic: ") {
			t.Fatalf("Generate panicked: %v", r.err)
		}
		return r.res, r.err
	case <-time.After(faultBound):
		t.Fatalf("Generate did not return within %v", faultBound)
		return nil, nil
	}
}

// wantLost checks that err is the named device-lost error, for errors.Is in both the backend's and the
// engine's terms (front ends test for core.ErrDeviceLost).
func wantLost(t *testing.T, err error, contains string) {
	t.Helper()
	if !errors.Is(err, ErrDeviceLost) || !errors.Is(err, core.ErrDeviceLost) {
		t.Fatalf("error %v, want one wrapping ErrDeviceLost", err)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("error %q does not say %q", err, contains)
	}
}

// checkNoGoroutineLeak fails if more goroutines run than before (after letting finished ones exit).
func checkNoGoroutineLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after the fault, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// A device lost before a generation, or during one (from the step callback after the first step, or
// from another goroutine while the generation runs), makes every family's Generate return promptly with
// the named error, leaking no goroutine; a backend opened afterwards generates the same image for the
// same seed as before the loss.
func TestDeviceLostGenerate(t *testing.T) {
	for _, fam := range faultFamilies() {
		t.Run(fam.name, func(t *testing.T) {
			b := newTestBackend(t)
			b.guard = 0
			g := fam.load(t, b)
			before, err := generateBounded(t, g, fam.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			goroutines := runtime.NumGoroutine()

			t.Run("before", func(t *testing.T) {
				b := newTestBackend(t)
				b.guard = 0
				g := fam.load(t, b)
				b.DeviceLost("test: lost before the generation")
				_, err := generateBounded(t, g, fam.req, nil)
				wantLost(t, err, "lost before the generation")
			})
			t.Run("step", func(t *testing.T) {
				b := newTestBackend(t)
				b.guard = 0
				g := fam.load(t, b)
				steps := 0
				_, err := generateBounded(t, g, fam.req, func(st gen.Step) error {
					if steps++; steps == 1 {
						b.DeviceLost("test: lost after the first step")
					}
					return nil
				})
				wantLost(t, err, "lost after the first step")
				if steps != 1 {
					t.Fatalf("%d steps reported, want 1 (the steps after the loss cannot have run)", steps)
				}
			})
			t.Run("goroutine", func(t *testing.T) {
				b := newTestBackend(t)
				b.guard = 0
				g := fam.load(t, b)
				// The loss comes from another goroutine, unsynchronised with the generation (the race
				// detector checks the backend's side); the second step's callback waits for it, so the
				// outcome does not depend on timing: the generation fails within the second step or the third.
				var wg sync.WaitGroup
				lost := make(chan struct{})
				steps := 0
				_, err := generateBounded(t, g, fam.req, func(st gen.Step) error {
					switch steps++; steps {
					case 1:
						wg.Add(1)
						go func() {
							defer wg.Done()
							b.DeviceLost("test: lost from another goroutine")
							close(lost)
						}()
					case 2:
						<-lost
					}
					return nil
				})
				wg.Wait()
				wantLost(t, err, "lost from another goroutine")
				if steps > 2 {
					t.Fatalf("%d steps reported after the loss", steps)
				}
			})
			checkNoGoroutineLeak(t, goroutines)

			// A new backend (the lost ones are closed by now) gives the same image as before the loss.
			nb := newTestBackend(t)
			nb.guard = 0
			after, err := generateBounded(t, fam.load(t, nb), fam.req, nil)
			if err != nil {
				t.Fatalf("on a new backend after the loss: %v", err)
			}
			testutil.RelClose(t, fam.name+" image after the loss", after.Images.Data, before.Images.Data, 0)
		})
	}
}

// A readback that fails on the device (its readback buffer destroyed under the backend: a real wgpu
// fault, not a flag) fails the generation with the named error saying which operation failed, and leaves
// the backend closable: the failed copy must not be submitted, which wgpu-native treats as fatal (it
// aborts the process).
func TestReadbackFailureGenerate(t *testing.T) {
	for _, fam := range faultFamilies()[:2] { // the families that read a step's tokens back every step
		t.Run(fam.name, func(t *testing.T) {
			b := newTestBackend(t)
			b.guard = 0
			g := fam.load(t, b)
			steps := 0
			_, err := generateBounded(t, g, fam.req, func(st gen.Step) error {
				if steps++; steps == 1 {
					b.mu.Lock()
					defer b.mu.Unlock()
					if b.staging == nil {
						return errors.New("no readback buffer after the first step")
					}
					b.staging.Destroy()
				}
				return nil
			})
			wantLost(t, err, "copying into the readback buffer failed")
			if _, err := b.Upload(core.HostTensor{Shape: core.Shape{1}, Data: []float32{1}}); !errors.Is(err, ErrDeviceLost) {
				t.Fatalf("an op after the failed readback: %v, want ErrDeviceLost", err)
			}
			b.Close() // must not submit the dropped work
		})
	}
}

// A GPU that does not answer within the wait limit is declared lost instead of hanging the caller: a
// readback behind a long kernel with a 1 ms limit (lavapipe takes ~0.3 s for this matmul) fails with the
// named error, every later op fails the same way, and Close returns.
func TestWaitLimitDeclaresDeviceLost(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	o := core.NewOps(b)
	const n = 512
	x := o.Upload(core.HostTensor{Shape: core.Shape{n, n}, Data: make([]float32, n*n)})
	y := o.Linear(x, x, nil)
	for range 3 {
		y = o.Linear(y, x, nil)
	}
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	b.waitLimit = time.Millisecond
	t0 := time.Now()
	_, err := b.Download(y)
	if err == nil && !strings.Contains(b.Adapter().String(), "llvmpipe") {
		t.Skipf("%v finished the work within %v: no wait to give up on", b.Adapter(), b.waitLimit)
	}
	wantLost(t, err, "did not finish within 1ms")
	if d := time.Since(t0); d > faultBound {
		t.Fatalf("Download took %v", d)
	}
	if err := b.Finish(); !errors.Is(err, ErrDeviceLost) {
		t.Fatalf("Finish after the timeout: %v, want ErrDeviceLost", err)
	}
	runtime.GC() // the abandoned mapping's callback must not run on collected memory
	b.Close()
	runtime.GC()
}

// A loss at any op of a generation (simulated: loseAfter), not only between steps, ends every family's
// Generate with the named error, never a panic on the nil tensors that failed ops return. The device is
// not really lost, so the test resets the mark and runs the next position on the same backend; at the end
// the backend still generates the image it made first (the dropped batches left nothing behind).
func TestDeviceLostAtEveryOp(t *testing.T) {
	for _, fam := range faultFamilies() {
		t.Run(fam.name, func(t *testing.T) {
			b := newTestBackend(t)
			b.guard = 0
			g := fam.load(t, b)
			const many = 1 << 30
			b.loseAfter = many
			first, err := generateBounded(t, g, fam.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			ops := many - b.loseAfter
			b.loseAfter = 0
			t.Logf("%d ops per generation", ops)
			// A spread of ~24 positions: all of them take minutes (RQ-tiny has 2240 ops); a loss at every
			// op of each family was checked once with stride 1.
			stride := max(1, ops/24)
			for at := 1; at <= ops; at += stride {
				b.lost.Store(nil)
				b.loseAfter = at
				_, err := generateBounded(t, g, fam.req, nil)
				if !errors.Is(err, ErrDeviceLost) {
					t.Fatalf("loss at op %d of %d: error %v, want one wrapping ErrDeviceLost", at, ops, err)
				}
			}
			b.lost.Store(nil)
			b.loseAfter = 0
			again, err := generateBounded(t, g, fam.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			testutil.RelClose(t, fam.name+" image after the losses", again.Images.Data, first.Images.Data, 0)
		})
	}
}
