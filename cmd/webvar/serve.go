package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/webvar/webvar/core/family"
	"github.com/webvar/webvar/weights"
	"github.com/webvar/webvar/weights/fashionflexvar"
	"github.com/webvar/webvar/weights/fashionmar"
	"github.com/webvar/webvar/weights/fashionrq"
	"github.com/webvar/webvar/weights/fashionvar"
)

// modulePath is this module's path: serve builds the app from the module's source, so it must run inside it.
const modulePath = "github.com/webvar/webvar"

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	weightsDir := fs.String("weights", "", "a converted weights directory (webvar convert ... -out DIR); default: the embedded "+fashionvar.Name+" model")
	demo := fs.String("demo", "", "the embedded demo model the page opens with: "+strings.Join(demoNames(), ", ")+" (default "+fashionvar.Name+"; all are in its model menu)")
	var extra modelList
	fs.Var(&extra, "model", "NAME=DIR: also offer the converted weights directory DIR in the page's model menu (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	weightsFS, weightsName := fashionvar.FS(), "the embedded "+fashionvar.Name+" model (Fashion-MNIST, 32x32)"
	defName := fashionvar.Name
	if *demo != "" {
		d, err := demoModel(*demo)
		switch {
		case err != nil:
			return err
		case *weightsDir != "":
			return usageError{"give -demo or -weights, not both"}
		}
		weightsFS, weightsName, defName = d.FS, "the embedded "+d.Name+" model", d.Name
	}
	if *weightsDir != "" {
		if _, err := os.Stat(filepath.Join(*weightsDir, weights.ManifestFile)); err != nil {
			return fmt.Errorf("-weights %s: no %s there (make the directory with webvar convert ... -out DIR): %w",
				*weightsDir, weights.ManifestFile, err)
		}
		weightsFS, weightsName, defName = os.DirFS(*weightsDir), *weightsDir, filepath.Base(filepath.Clean(*weightsDir))
	}
	models := []servedModel{{Name: defName, FS: weightsFS}}
	for _, m := range demoModels() {
		if m.Name != defName {
			models = append(models, m)
		}
	}
	models = append(models, extra...)
	dir, err := os.MkdirTemp("", "webvar-serve-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := buildApp(ctx, dir, stderr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if err := checkModels(models); err != nil {
		return err
	}
	srv := &http.Server{Handler: newServeHandlerModels(dir, models), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "serving http://%s/ (weights: %s); Ctrl-C stops\n", ln.Addr(), weightsName)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// goEnv runs `go env` for the listed variables.
func goEnv(ctx context.Context, vars ...string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "go", append([]string{"env"}, vars...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("go env (serve needs the Go toolchain to build the browser app): %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(vars) {
		return nil, fmt.Errorf("go env %v: unexpected output %q", vars, out)
	}
	return lines, nil
}

// moduleRoot finds this module's source from the working directory: the app is compiled from it and
// index.html lives at its root (outside cmd/webvar, so it cannot be embedded).
func moduleRoot(ctx context.Context) (string, error) {
	env, err := goEnv(ctx, "GOMOD")
	if err != nil {
		return "", err
	}
	gomod := env[0]
	notHere := fmt.Errorf("webvar serve builds the browser app from source: run it inside the %s module (go run ./cmd/webvar serve)", modulePath)
	if gomod == "" || gomod == os.DevNull {
		return "", notHere
	}
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(string(data), "\n")
	if strings.TrimSpace(first) != "module "+modulePath {
		return "", notHere
	}
	return filepath.Dir(gomod), nil
}

// pageFiles are the app's hand-written files, copied from the module (source path) to the served
// directory (flat name): the demo page, the embedding example and the widget script it loads.
var pageFiles = [][2]string{
	{"index.html", "index.html"},
	{"wasm/embed.html", "embed.html"},
	{"wasm/webvar-widget.js", "webvar-widget.js"},
}

// appBinaries are the browser app's two builds of ./wasm: the page with the ebiten UI (the demo's
// default), and the page with HTML controls (ui=html, embed=1: the widget), which leaves ebiten out
// (about 2 MB less, gzipped) and so is a separate file.
var appBinaries = []struct{ name, tags string }{
	{"webvar.wasm", ""},
	{"webvar-canvas.wasm", "canvasui"},
}

// buildApp writes the appBinaries (built from ./wasm for js/wasm), the matching wasm_exec.js and the
// pageFiles into dir.
func buildApp(ctx context.Context, dir string, stderr io.Writer) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	env, err := goEnv(ctx, "GOROOT")
	if err != nil {
		return err
	}
	for _, bin := range appBinaries {
		out := filepath.Join(dir, bin.name)
		// The command as a user can paste it: without -o, go build would name its output "wasm", the
		// package directory's own name, and refuse.
		fmt.Fprintf(stderr, "building the browser app (GOOS=js GOARCH=wasm go build -trimpath -ldflags=\"-s -w\" -tags %q -o %s ./wasm)...\n", bin.tags, out)
		start := time.Now()
		// -s -w drop the symbol table and DWARF (a quarter of the gzipped download; panics still name
		// functions), -trimpath the builder's paths.
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-tags", bin.tags, "-o", out, "./wasm")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building the browser app (%s): %v\n%s", bin.name, err, msg)
		}
		st, err := os.Stat(out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "built %s (%.1f MB) in %.1f s\n", bin.name, float64(st.Size())/1e6, time.Since(start).Seconds())
	}
	// wasm_exec.js must come from the same Go that built the binary: its imports change between versions.
	if err := copyFile(filepath.Join(env[0], "lib", "wasm", "wasm_exec.js"), filepath.Join(dir, "wasm_exec.js")); err != nil {
		return fmt.Errorf("wasm_exec.js: %w", err)
	}
	for _, f := range pageFiles {
		if err := copyFile(filepath.Join(root, filepath.FromSlash(f[0])), filepath.Join(dir, f[1])); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

// newServeHandler serves the app built into dir (index.html, embed.html, webvar-widget.js, the
// appBinaries, wasm_exec.js) and the weights
// weights directory (a file system rooted at it) under /weights/.
func newServeHandler(dir string, weightsFS fs.FS) http.Handler {
	return newServeHandlerModels(dir, []servedModel{{Name: "weights", FS: weightsFS}})
}

// servedModel is a converted weights directory the page may load: the first of a list at /weights/, every
// one at /models/NAME/, and all in /models.json for the page's model menu.
type servedModel struct {
	Name string
	FS   fs.FS
}

// modelList is the -model NAME=DIR flag.
type modelList []servedModel

func (l *modelList) String() string { return fmt.Sprint(len(*l)) }

func (l *modelList) Set(v string) error {
	name, dir, ok := strings.Cut(v, "=")
	if !ok || name == "" || dir == "" || strings.ContainsAny(name, "/?#&") {
		return fmt.Errorf("want NAME=DIR (a name without / ? # &), got %q", v)
	}
	if _, err := os.Stat(filepath.Join(dir, weights.ManifestFile)); err != nil {
		return fmt.Errorf("%s: no %s there (make the directory with webvar convert ... -out DIR)", dir, weights.ManifestFile)
	}
	*l = append(*l, servedModel{Name: name, FS: os.DirFS(dir)})
	return nil
}

// demoModels are the demo models built into webvar, the default first.
func demoModels() []servedModel {
	return []servedModel{{Name: fashionvar.Name, FS: fashionvar.FS()}, {Name: fashionflexvar.Name, FS: fashionflexvar.FS()},
		{Name: fashionmar.Name, FS: fashionmar.FS()}, {Name: fashionrq.Name, FS: fashionrq.FS()}}
}

// demoNames lists the demo models' names (-demo).
func demoNames() []string {
	var names []string
	for _, m := range demoModels() {
		names = append(names, m.Name)
	}
	return names
}

// demoModel returns the demo model of that name, or a usage error listing the names (-demo).
func demoModel(name string) (*servedModel, error) {
	for _, m := range demoModels() {
		if m.Name == name {
			return &m, nil
		}
	}
	return nil, usageError{fmt.Sprintf("-demo %q: no such demo model (there are %s)", name, strings.Join(demoNames(), ", "))}
}

// modelEntry is one line of models.json.
type modelEntry struct {
	Name   string `json:"name"`
	Title  string `json:"title"`  // "VAR, 10 classes"
	Family string `json:"family"` // as recorded in the manifest
	URL    string `json:"url"`    // the weights directory, relative to the page
}

// newServeHandlerModels is newServeHandler for several models (unique names): the first is the page's
// default (weights/), each is also at models/NAME/, and models.json lists them for the model menu with
// their family and class count (checkModels has read their manifests; one that cannot be read is
// listed as such, and the page reports the error when it loads it).
func newServeHandlerModels(dir string, models []servedModel) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// The app changes with every build: let the browser revalidate rather than keep a stale page.
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFile(w, r, filepath.Join(dir, "index.html"))
	})
	// These change with every build (or edit) too.
	for _, name := range []string{"wasm_exec.js", "webvar-widget.js", "embed.html"} {
		mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFile(w, r, filepath.Join(dir, name))
		})
	}
	for _, bin := range appBinaries {
		gz := &gzipped{path: filepath.Join(dir, bin.name)}
		go gz.once.Do(gz.load) // compress now rather than on the first visitor's request
		mux.Handle("GET /"+bin.name, gz)
	}
	var entries []modelEntry
	for i, m := range models {
		title, fam := "unreadable manifest", ""
		if man, err := weights.LoadManifest(context.Background(), weights.FSSource(m.FS)); err == nil {
			title, fam = man.Family, man.Family
			if f, err := family.ByName(man.Family); err == nil {
				title = f.Title
			}
			if c, err := man.ConfigInt("classes"); err == nil {
				title += fmt.Sprintf(", %d classes", c)
			}
		}
		url := "models/" + m.Name + "/"
		if i == 0 {
			url = "weights/"
			serveWeights(mux, "/weights/", m.FS)
		}
		serveWeights(mux, "/models/"+m.Name+"/", m.FS)
		entries = append(entries, modelEntry{Name: m.Name, Title: title, Family: fam, URL: url})
	}
	list, _ := json.Marshal(entries) // strings only: cannot fail
	mux.HandleFunc("GET /models.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Type", "application/json")
		w.Write(list)
	})
	return mux
}

// checkModels reads every model's manifest before serving, so that a bad directory or a name given
// twice is an error at start-up rather than in the page.
func checkModels(models []servedModel) error {
	seen := map[string]bool{}
	for _, m := range models {
		if seen[m.Name] {
			return fmt.Errorf("model %q given twice", m.Name)
		}
		seen[m.Name] = true
		man, err := weights.LoadManifest(context.Background(), weights.FSSource(m.FS))
		if err != nil {
			return fmt.Errorf("model %s: %w", m.Name, err)
		}
		if _, err := family.ByName(man.Family); err != nil {
			return fmt.Errorf("model %s: %w", m.Name, err)
		}
	}
	return nil
}

// serveWeights serves a converted weights directory under prefix: the manifest revalidated on every
// load, the chunks (named by content, checksummed) cached for good.
func serveWeights(mux *http.ServeMux, prefix string, weightsFS fs.FS) {
	wfs := http.StripPrefix(prefix, http.FileServer(http.FS(weightsFS)))
	mux.HandleFunc("GET "+prefix, func(w http.ResponseWriter, r *http.Request) {
		name := path.Base(r.URL.Path)
		switch {
		case strings.HasSuffix(r.URL.Path, "/"):
			// No directory listings: the app asks for the manifest and the chunks it names, nothing else.
			http.NotFound(w, r)
			return
		case name == weights.ManifestFile:
			// The manifest changes when the directory is converted again.
			w.Header().Set("Cache-Control", "no-cache")
		case strings.HasPrefix(name, "chunk-") && strings.HasSuffix(name, ".bin") && r.URL.Query().Get("sha256") != "":
			// Asked for by content (the loader adds the manifest's SHA-256, weights.VersionedSource): a
			// long-lived copy is safe. Chunk names are positional, so the plain name is not: a new conversion
			// reuses it for other bytes.
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		default:
			w.Header().Set("Cache-Control", "no-cache")
		}
		wfs.ServeHTTP(w, r)
	})
}

// gzipped serves a file, gzip-compressed (once, at the default level: the ebiten build is served as
// 6.1 MB where BestSpeed gave 7.5 MB) for clients that accept it.
type gzipped struct {
	path string
	once sync.Once
	raw  []byte
	gz   []byte
	mod  time.Time
	err  error
}

func (g *gzipped) load() {
	st, err := os.Stat(g.path)
	if err != nil {
		g.err = err
		return
	}
	g.mod = st.ModTime()
	if g.raw, g.err = os.ReadFile(g.path); g.err != nil {
		return
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if _, err := zw.Write(g.raw); err != nil {
		g.err = err
		return
	}
	if g.err = zw.Close(); g.err == nil {
		g.gz = buf.Bytes()
	}
}

func (g *gzipped) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.once.Do(g.load)
	if g.err != nil {
		http.Error(w, filepath.Base(g.path)+": "+g.err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/wasm")
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept-Encoding")
	body := g.raw
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		body = g.gz
	}
	// ServeContent adds Last-Modified/If-Modified-Since and ranges; the content type is set above, so it
	// does not sniff.
	http.ServeContent(w, r, filepath.Base(g.path), g.mod, bytes.NewReader(body))
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip (not with q=0).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) != "gzip" {
			continue
		}
		q := strings.ReplaceAll(params, " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
