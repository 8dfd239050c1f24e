package testutil

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/loader"
)

// Root returns the repository root (for testdata paths independent of the package under test).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// VarTiny returns the path of a file of the var-tiny fixture (testdata/var-tiny).
func VarTiny(name string) string { return filepath.Join(Root(), "testdata", "var-tiny", name) }

// Golden gives typed access to a golden.safetensors file.
type Golden struct {
	t testing.TB
	c *loader.Checkpoint
}

// OpenGolden opens a golden tensor file; the test fails if it cannot.
func OpenGolden(t testing.TB, path string) *Golden {
	t.Helper()
	c, err := loader.Open(path)
	if err != nil {
		t.Fatalf("open golden %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Golden{t: t, c: c}
}

// F32 returns a float tensor.
func (g *Golden) F32(name string) core.HostTensor {
	g.t.Helper()
	h, err := g.c.Host(name)
	if err != nil {
		g.t.Fatalf("golden %s: %v", name, err)
	}
	return h
}

// F64 returns an F64 tensor exactly.
func (g *Golden) F64(name string) []float64 {
	g.t.Helper()
	v, err := g.c.Float64(name)
	if err != nil {
		g.t.Fatalf("golden %s: %v", name, err)
	}
	return v
}

// Ints returns an integer tensor as ints.
func (g *Golden) Ints(name string) []int {
	g.t.Helper()
	v, err := g.c.Int64(name)
	if err != nil {
		g.t.Fatalf("golden %s: %v", name, err)
	}
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// Has reports whether the golden file has name.
func (g *Golden) Has(name string) bool {
	_, ok := g.c.Info(name)
	return ok
}

// Generations runs check as a subtest for each generation golden, ar0, ar1, ... (as long as arN.label_B
// exists), and fails t when there is none; fixture names the fixture in that failure.
func (g *Golden) Generations(t *testing.T, fixture string, check func(t *testing.T, run string)) {
	runs := 0
	for i := 0; g.Has(fmt.Sprintf("ar%d.label_B", i)); i++ {
		run := fmt.Sprintf("ar%d", i)
		t.Run(run, func(t *testing.T) { check(t, run) })
		runs++
	}
	if runs == 0 {
		t.Errorf("fixture %s has no generation goldens (ar0.label_B)", fixture)
	}
}

// CompareTaps compares each of names that the golden file has with the tap of the same name, within
// tol of the golden's max |value| (RelClose); a golden without its tap is an error.
func (g *Golden) CompareTaps(t testing.TB, taps map[string]core.HostTensor, names []string, tol float64) {
	t.Helper()
	for _, n := range names {
		if !g.Has(n) {
			continue
		}
		got, ok := taps[n]
		if !ok {
			t.Errorf("no tap %s", n)
			continue
		}
		RelClose(t, n, got.Data, g.F32(n).Data, tol)
	}
}

// Source opens a checkpoint as a WeightSource for the test.
func Source(t testing.TB, path string) core.WeightSource {
	t.Helper()
	c, err := loader.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.WeightSource()
}

// IntsEqual fails t with the first differing position unless got == want.
func IntsEqual(t testing.TB, name string, got, want []int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("TOKENS %s: %d ids, want %d", name, len(got), len(want))
		return
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("TOKENS %s: id %d at %d, want %d\n got  %v\n want %v", name, got[i], i, want[i], got, want)
			return
		}
	}
	t.Logf("TOKENS %s: %d ids OK", name, len(want))
}
