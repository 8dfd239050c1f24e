// Package archtest checks the package dependency rules of ARCHITECTURE: the engine (core/) and the weights
// code (loader/) never depend on drawing or the browser, so they build and test anywhere.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/webvar/webvar/internal/testutil"
)

var forbidden = []string{
	"syscall/js",
	"github.com/hajimehoshi/ebiten",
	"github.com/webvar/webvar/ui",
	"github.com/webvar/webvar/wasm",
	"github.com/webvar/webvar/cmd",
}

func TestEngineDoesNotImportUIOrBrowser(t *testing.T) {
	root := testutil.Root()
	checked := 0
	for _, dir := range []string{"core", "loader"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			// Tests may wire platform pieces in (the browser test opens its device through wasm/jsgpu);
			// the rule is about what the packages themselves pull in.
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			checked++
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range forbidden {
					if p == bad || strings.HasPrefix(p, bad+"/") {
						rel, _ := filepath.Rel(root, path)
						t.Errorf("%s imports %s: core and loader must not depend on UI, browser or commands", rel, p)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d files: wrong root?", checked)
	}
}
