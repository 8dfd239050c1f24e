package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webvar/webvar/loader"
)

// Fixture is a directory of golden tensors made by running an official implementation, with its
// checkpoints (testdata/var-tiny, testdata/flexvar-tiny, or a directory from WEBVAR_FIXTURES).
type Fixture struct {
	Name, Dir, Family string
}

// Path is the path of one of the fixture's files.
func (f Fixture) Path(name string) string { return filepath.Join(f.Dir, name) }

// Families whose fixtures the tests can run. A WEBVAR_FIXTURES directory of another family fails
// TestFixtureDirectoriesAreRunnable.
var Families = []string{"var", "flexvar", "mar", "rq"}

// DetectFixtureFamily tells a fixture directory's family from its files: an RQ release layout
// (stage1/, stage2/), a MAR checkpoint (mar.pth), or var.pth, whose position table says VAR (pos_1LC
// [1, L, C] with lvl_embed) or FlexVAR (a 2-D grid pos_1LC [1, C, H, W]).
func DetectFixtureFamily(dir string) (string, error) {
	exists := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	switch {
	case exists("stage1") && exists("stage2"):
		return "rq", nil
	case exists("mar.pth"):
		return "mar", nil
	case exists("var.pth"):
		c, err := loader.Open(filepath.Join(dir, "var.pth"))
		if err != nil {
			return "", fmt.Errorf("fixture %s: %w", dir, err)
		}
		defer c.Close()
		src := c.WeightSource()
		ps, ok := src.Shape("pos_1LC")
		if !ok {
			return "", fmt.Errorf("fixture %s: var.pth has no pos_1LC", dir)
		}
		if len(ps) == 4 {
			return "flexvar", nil
		}
		return "var", nil
	}
	return "", fmt.Errorf("fixture %s: no var.pth, mar.pth or stage1/ + stage2/: not a fixture directory", dir)
}

// ExtraFixtureDirs are the directories listed in WEBVAR_FIXTURES (colon-separated).
func ExtraFixtureDirs() []string {
	var out []string
	for _, d := range strings.Split(os.Getenv("WEBVAR_FIXTURES"), string(os.PathListSeparator)) {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// Fixtures returns the bundled fixture of a family (testdata/<family>-tiny) and every WEBVAR_FIXTURES
// directory of that family. A listed directory whose family cannot be told fails the test.
func Fixtures(t testing.TB, family string) []Fixture {
	t.Helper()
	out := []Fixture{{Name: family + "-tiny", Dir: filepath.Join(Root(), "testdata", family+"-tiny"), Family: family}}
	for _, d := range ExtraFixtureDirs() {
		fam, err := DetectFixtureFamily(d)
		if err != nil {
			t.Fatalf("WEBVAR_FIXTURES: %v", err)
		}
		if fam == family {
			out = append(out, Fixture{Name: filepath.Base(filepath.Clean(d)), Dir: d, Family: fam})
		}
	}
	return out
}

// FlexVARTiny returns the path of a file of the flexvar-tiny fixture (testdata/flexvar-tiny).
func FlexVARTiny(name string) string { return filepath.Join(Root(), "testdata", "flexvar-tiny", name) }

// MARTiny returns the path of a file of the mar-tiny fixture (testdata/mar-tiny).
func MARTiny(name string) string { return filepath.Join(Root(), "testdata", "mar-tiny", name) }
