package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webvar/webvar/weights/fashionvar"
)

// fakeApp writes stand-ins for the built app and a weights directory, so that the handler can be tested
// without compiling anything.
func fakeApp(t *testing.T) (dir, wdir string, wasm []byte) {
	t.Helper()
	dir, wdir = t.TempDir(), t.TempDir()
	wasm = bytes.Repeat([]byte("\x00asm fake wasm body "), 1000)
	for name, data := range map[string][]byte{
		filepath.Join(dir, "index.html"):         []byte("<!doctype html><title>webvar</title>"),
		filepath.Join(dir, "wasm_exec.js"):       []byte("// go"),
		filepath.Join(dir, "webvar-widget.js"):   []byte("// widget"),
		filepath.Join(dir, "embed.html"):         []byte("<!doctype html><title>embed</title>"),
		filepath.Join(dir, "webvar.wasm"):        wasm,
		filepath.Join(wdir, "manifest.msgpack"):  []byte("manifest"),
		filepath.Join(wdir, "chunk-00000.bin"):   []byte("chunk zero"),
		filepath.Join(wdir, "notes", "x.txt"):    []byte("x"),
		filepath.Join(wdir, "chunk-00001.bin.x"): []byte("?"),
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, wdir, wasm
}

func get(t *testing.T, srv *httptest.Server, path string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// A bare transport: the default one asks for gzip itself and hides Content-Encoding.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestServeHandler(t *testing.T) {
	dir, wdir, wasm := fakeApp(t)
	srv := httptest.NewServer(newServeHandler(dir, os.DirFS(wdir)))
	defer srv.Close()

	resp, body := get(t, srv, "/", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<title>webvar</title>") {
		t.Fatalf("/: %s %q", resp.Status, body)
	}
	// The scripts and pages change with every build: the browser must revalidate them.
	for _, p := range []string{"/wasm_exec.js", "/webvar-widget.js", "/embed.html"} {
		if resp, _ := get(t, srv, p, nil); resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s: %s, Cache-Control %q", p, resp.Status, resp.Header.Get("Cache-Control"))
		}
	}

	resp, body = get(t, srv, "/webvar.wasm", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/wasm" ||
		resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, wasm) {
		t.Fatalf("/webvar.wasm without gzip: %s %v, %d bytes", resp.Status, resp.Header, len(body))
	}
	resp, body = get(t, srv, "/webvar.wasm", map[string]string{"Accept-Encoding": "br, gzip"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/wasm" ||
		resp.Header.Get("Content-Encoding") != "gzip" || len(body) >= len(wasm) {
		t.Fatalf("/webvar.wasm with gzip: %s %v, %d bytes", resp.Status, resp.Header, len(body))
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := io.ReadAll(zr); err != nil || !bytes.Equal(raw, wasm) {
		t.Fatalf("gzipped wasm does not decompress to the binary: %v", err)
	}
	if resp, _ := get(t, srv, "/webvar.wasm", map[string]string{"Accept-Encoding": "gzip;q=0"}); resp.Header.Get("Content-Encoding") != "" {
		t.Fatal("gzip;q=0 still got gzip")
	}

	resp, body = get(t, srv, "/weights/manifest.msgpack", nil)
	if resp.StatusCode != 200 || string(body) != "manifest" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("manifest: %s %v %q", resp.Status, resp.Header, body)
	}
	// A chunk asked for by its content may be cached forever; by its positional name alone it may not (a
	// new conversion reuses the name for other bytes).
	resp, body = get(t, srv, "/weights/chunk-00000.bin?sha256=0123abcd", nil)
	if resp.StatusCode != 200 || string(body) != "chunk zero" || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("chunk by content: %s %v %q", resp.Status, resp.Header, body)
	}
	resp, body = get(t, srv, "/weights/chunk-00000.bin", nil)
	if resp.StatusCode != 200 || string(body) != "chunk zero" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("chunk by name: %s %v %q", resp.Status, resp.Header, body)
	}
	if resp, _ := get(t, srv, "/weights/chunk-00001.bin.x", nil); strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatal("a file that is not a chunk was marked immutable")
	}
	for _, p := range []string{"/weights/", "/weights/notes/", "/nothing", "/index.html/x", "/weights/../serve.go"} {
		if resp, _ := get(t, srv, p, nil); resp.StatusCode != 404 && resp.StatusCode != 400 && resp.StatusCode/100 != 3 {
			t.Errorf("%s: %s, want not found", p, resp.Status)
		}
	}
}

// Without -weights, serve hands out the embedded default model under /weights/, byte for byte.
func TestServeDefaultModel(t *testing.T) {
	srv := httptest.NewServer(newServeHandler(t.TempDir(), fashionvar.FS()))
	defer srv.Close()
	for _, name := range []string{"manifest.msgpack", "chunk-00000.bin"} {
		want, err := fs.ReadFile(fashionvar.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := get(t, srv, "/weights/"+name, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Fatalf("/weights/%s: %s, %d bytes (want %d)", name, resp.Status, len(body), len(want))
		}
	}
}

func TestServeBadWeightsDir(t *testing.T) {
	rc, _, stderr := runCLI(t, "serve", "-weights", t.TempDir())
	if rc != 1 || !strings.Contains(stderr, "manifest.msgpack") {
		t.Fatalf("serve on an empty directory: exit %d: %s", rc, stderr)
	}
	if rc, out, _ := runCLI(t, "help"); rc != 0 || !strings.Contains(out, "serve") || strings.Contains(out, "Not built yet: serve") {
		t.Fatalf("help does not list serve: %q", out)
	}
}

// The model menu's list: the default model at weights/, every model at models/NAME/ with its family and
// class count; a name given twice or an unreadable directory is an error before serving.
func TestServeModelList(t *testing.T) {
	models := []servedModel{{Name: "demo", FS: fashionvar.FS()}, {Name: "again", FS: fashionvar.FS()}}
	if err := checkModels(models); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newServeHandlerModels(t.TempDir(), models))
	defer srv.Close()
	resp, body := get(t, srv, "/models.json", nil)
	want := `[{"name":"demo","title":"VAR, 10 classes","family":"var","url":"weights/"},{"name":"again","title":"VAR, 10 classes","family":"var","url":"models/again/"}]`
	if resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("models.json: %s %s", resp.Status, body)
	}
	if resp, _ := get(t, srv, "/models/again/manifest.msgpack", nil); resp.StatusCode != 200 {
		t.Fatalf("models/again/manifest.msgpack: %s", resp.Status)
	}
	if err := checkModels(append(models, servedModel{Name: "demo", FS: fashionvar.FS()})); err == nil {
		t.Error("a name given twice was accepted")
	}
	if err := checkModels([]servedModel{{Name: "empty", FS: os.DirFS(t.TempDir())}}); err == nil {
		t.Error("a directory without a manifest was accepted")
	}
	var l modelList
	if err := l.Set("noequals"); err == nil {
		t.Error("-model without NAME=DIR was accepted")
	}
}
