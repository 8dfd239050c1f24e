package testutil

import (
	"encoding/json"
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

// VariantsDir holds fixtures made by webvar's own PyTorch ports (weights/train/make_*_fixture.py) at
// configurations the official fixtures do not cover; testdata/variants/README.md says how each was made.
func VariantsDir() string { return filepath.Join(Root(), "testdata", "variants") }

// Fixtures returns the bundled fixture of a family (testdata/<family>-tiny, from the official code), the
// bundled variants of that family (testdata/variants/*) and every WEBVAR_FIXTURES directory of that
// family. A variant or listed directory whose family cannot be told fails the test.
func Fixtures(t testing.TB, family string) []Fixture {
	t.Helper()
	out := []Fixture{{Name: family + "-tiny", Dir: filepath.Join(Root(), "testdata", family+"-tiny"), Family: family}}
	variants, err := os.ReadDir(VariantsDir())
	if err != nil {
		t.Fatalf("bundled fixture variants: %v", err)
	}
	for _, e := range variants {
		if !e.IsDir() {
			continue
		}
		d := filepath.Join(VariantsDir(), e.Name())
		fam, err := DetectFixtureFamily(d)
		if err != nil {
			t.Fatalf("testdata/variants: %v", err)
		}
		if fam == family {
			out = append(out, Fixture{Name: e.Name(), Dir: d, Family: fam})
		}
	}
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

// VARConfig is what a VAR or FlexVAR fixture's config.json says that no tensor does: the attention head
// count (without l2-norm attention the checkpoint has no per-head tensor) and the trained patch_nums.
type VARConfig struct {
	PatchNums  []int `json:"patch_nums"`
	NumHeads   int   `json:"num_heads"`
	AttnL2Norm bool  `json:"attn_l2_norm"`
}

// ReadVARConfig reads config.json's "var" object; a fixture without config.json gives the zero value
// (everything from the checkpoint).
func ReadVARConfig(t testing.TB, f Fixture) VARConfig {
	t.Helper()
	raw, err := os.ReadFile(f.Path("config.json"))
	if os.IsNotExist(err) {
		return VARConfig{}
	}
	if err != nil {
		t.Fatalf("fixture %s: %v", f.Name, err)
	}
	var cfg struct {
		VAR VARConfig `json:"var"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("fixture %s: config.json: %v", f.Name, err)
	}
	return cfg.VAR
}

// FlexVARTiny returns the path of a file of the flexvar-tiny fixture (testdata/flexvar-tiny).
func FlexVARTiny(name string) string { return filepath.Join(Root(), "testdata", "flexvar-tiny", name) }

// MARTiny returns the path of a file of the mar-tiny fixture (testdata/mar-tiny).
func MARTiny(name string) string { return filepath.Join(Root(), "testdata", "mar-tiny", name) }
