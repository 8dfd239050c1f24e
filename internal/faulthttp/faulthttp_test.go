package faulthttp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestInjectorFaultsByPathAndName(t *testing.T) {
	body := []byte("0123456789abcdef")
	in := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	srv := httptest.NewServer(in)
	defer srv.Close()
	get := func(p string) (int, string) {
		t.Helper()
		res, err := http.Get(srv.URL + p)
		if err != nil {
			return -1, err.Error()
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return res.StatusCode, "read: " + err.Error()
		}
		return res.StatusCode, string(b)
	}
	in.Queue("/b/chunk-1.bin", Status404) // this directory's file only
	in.Queue("chunk-1.bin", Status500)    // the name anywhere
	in.Always("/c/chunk-2.bin", Corrupt)

	for _, c := range []struct {
		path string
		code int
		same bool
	}{
		{"/b/chunk-1.bin", 404, false}, // the full path first
		{"/a/chunk-1.bin", 500, false}, // then the name
		{"/a/chunk-1.bin", 200, true},  // queued faults are used up
		{"/b/chunk-1.bin", 200, true},
		{"/c/chunk-2.bin", 200, false}, // corrupt, every time
		{"/c/chunk-2.bin", 200, false},
		{"/a/chunk-2.bin", 200, true},
	} {
		code, got := get(c.path)
		if code != c.code || (got == string(body)) != c.same {
			t.Errorf("%s: %d %q, want status %d and the body untouched: %v", c.path, code, got, c.code, c.same)
		}
	}
	if n := in.Requests("chunk-1.bin"); n != 4 {
		t.Errorf("Requests(chunk-1.bin) = %d, want 4 (both directories)", n)
	}
	if n := in.Requests("/b/chunk-1.bin"); n != 2 {
		t.Errorf("Requests(/b/chunk-1.bin) = %d, want 2", n)
	}
	if n := in.Injected(); n != 4 {
		t.Errorf("Injected() = %d, want 4", n)
	}
	in.Reset()
	if code, _ := get("/c/chunk-2.bin"); code != 200 || in.Injected() != 0 || in.Requests("chunk-2.bin") != 1 {
		t.Errorf("after Reset: status %d, %d injected, %d requests", code, in.Injected(), in.Requests("chunk-2.bin"))
	}
}
