package weights

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The HTTP source asks for a chunk by name and content (?sha256=), so that an HTTP cache keyed by URL never
// serves an old conversion's chunk under a new manifest.
func TestHTTPSourceAsksForChunksByContent(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.RequestURI())
		io.WriteString(w, "x")
	}))
	defer srv.Close()
	src := HTTPSource(srv.URL+"/w/", nil)
	vs, ok := src.(VersionedSource)
	if !ok {
		t.Fatal("the HTTP source is not versioned")
	}
	rc, _, err := vs.OpenVersion(context.Background(), "chunk-00003.bin", "ab12")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if len(got) != 1 || got[0] != "/w/chunk-00003.bin?sha256=ab12" {
		t.Fatalf("requests %v", got)
	}
	if _, ok := DirSource(".").(VersionedSource); ok || strings.Contains(got[0], "..") {
		t.Fatal("a directory source has no versions")
	}
}
