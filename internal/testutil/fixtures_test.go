package testutil

import (
	"slices"
	"testing"
)

// Every WEBVAR_FIXTURES directory must belong to a family whose tests run it: a directory no test can
// run fails here instead of passing silently.
func TestFixtureDirectoriesAreRunnable(t *testing.T) {
	for _, d := range ExtraFixtureDirs() {
		fam, err := DetectFixtureFamily(d)
		if err != nil {
			t.Errorf("WEBVAR_FIXTURES: %v", err)
			continue
		}
		if !slices.Contains(Families, fam) {
			t.Errorf("WEBVAR_FIXTURES: %s is a %s fixture; this version of webvar runs %v fixtures only", d, fam, Families)
		}
	}
}

func TestFixtureFamilyOfBundledFixtures(t *testing.T) {
	for _, fam := range Families {
		got, err := DetectFixtureFamily(Fixtures(t, fam)[0].Dir)
		if err != nil || got != fam {
			t.Errorf("testdata/%s-tiny detected as %q (%v)", fam, got, err)
		}
	}
	if _, err := DetectFixtureFamily(t.TempDir()); err == nil {
		t.Error("an empty directory was taken for a fixture")
	}
}
