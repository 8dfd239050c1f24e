package weights

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webvar/webvar/internal/faulthttp"
)

// fastRetry is NetworkRetry's shape with waits short enough for tests.
func fastRetry() *Retry {
	return &Retry{Attempts: 4, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
}

// faultServer serves fx's directory over HTTP behind a fault injector.
func faultServer(t *testing.T, fx *fixture) (*faulthttp.Injector, Source) {
	t.Helper()
	in := faulthttp.New(http.FileServer(http.Dir(fx.dir)))
	srv := httptest.NewServer(in)
	t.Cleanup(srv.Close)
	return in, HTTPSource(srv.URL, srv.Client())
}

// Every fault a server or network can inject into one chunk is survived by retrying it: the model loads
// and equals the original, each retry is reported, and the chunk is requested once per try.
func TestRetryTransientFaults(t *testing.T) {
	fx := writeFixture(t, t.TempDir())
	c1 := fx.m.Chunks[1].File
	for _, faults := range [][]faulthttp.Fault{
		{faulthttp.Drop}, {faulthttp.Status500}, {faulthttp.Status404}, {faulthttp.Corrupt}, {faulthttp.Truncate},
		{faulthttp.Drop, faulthttp.Status500, faulthttp.Corrupt},
	} {
		name := ""
		for _, f := range faults {
			name += f.String() + "-"
		}
		t.Run(strings.TrimSuffix(name, "-"), func(t *testing.T) {
			in, src := faultServer(t, fx)
			in.Queue(c1, faults...)
			var events []RetryEvent
			var ps []Progress
			md, err := Load(context.Background(), src, LoadOptions{Retry: fastRetry(),
				OnRetry:    func(e RetryEvent) { events = append(events, e) },
				OnProgress: func(p Progress) { ps = append(ps, p) }})
			if err != nil {
				t.Fatal(err)
			}
			checkModel(t, fx, md)
			if len(events) != len(faults) {
				t.Fatalf("%d retry events for %d faults: %v", len(events), len(faults), events)
			}
			for i, e := range events {
				if e.File != c1 || e.Attempt != i+1 || e.Attempts != 4 || !Retryable(e.Err) {
					t.Errorf("retry event %d: %+v", i, e)
				}
			}
			if got := in.Requests(c1); got != len(faults)+1 {
				t.Errorf("%s requested %d times, want %d", c1, got, len(faults)+1)
			}
			for i := 1; i < len(ps); i++ {
				if ps[i].BytesDone < ps[i-1].BytesDone {
					t.Fatalf("progress went backwards across a retry: %+v after %+v", ps[i], ps[i-1])
				}
			}
		})
	}
}

// A chunk that never verifies is never used: after the last try Load fails naming the chunk and the
// number of tries, and with a cache the next Load resumes: the chunks verified before it are not fetched
// again.
func TestRetryGivesUpNamingTheChunk(t *testing.T) {
	fx := writeFixture(t, t.TempDir())
	if len(fx.m.Chunks) < 3 {
		t.Fatalf("fixture has %d chunks, want 3 or more", len(fx.m.Chunks))
	}
	bad := fx.m.Chunks[2].File
	for _, f := range []faulthttp.Fault{faulthttp.Corrupt, faulthttp.Status500, faulthttp.Drop, faulthttp.Status404} {
		t.Run(f.String(), func(t *testing.T) {
			in, src := faultServer(t, fx)
			in.Always(bad, f)
			cache := &memCache{}
			md, err := Load(context.Background(), src, LoadOptions{Retry: fastRetry(), Cache: cache})
			if err == nil || md != nil {
				t.Fatalf("Load with %s always %s: model %v, err %v", bad, f, md != nil, err)
			}
			var we *Error
			if !errors.As(err, &we) || we.Chunk != bad || !Retryable(err) {
				t.Fatalf("error %v (%T) does not name %s as a retryable failure", err, err, bad)
			}
			if !strings.Contains(err.Error(), "gave up after 4 tries") {
				t.Errorf("error %q does not say how many tries", err)
			}
			if f == faulthttp.Corrupt && !errors.Is(err, ErrIntegrity) {
				t.Errorf("wrong bytes: error %v, want ErrIntegrity", err)
			}
			if got := in.Requests(bad); got != 4 {
				t.Errorf("%s requested %d times, want 4", bad, got)
			}
			if _, ok := cache.Get(bad, fx.m.Chunks[2].SHA256); ok {
				t.Errorf("the cache holds %s although it never verified", bad)
			}
			// The server recovers; Load again takes the verified chunks from the cache.
			in.Reset()
			md, err = Load(context.Background(), src, LoadOptions{Retry: fastRetry(), Cache: cache})
			if err != nil {
				t.Fatal(err)
			}
			checkModel(t, fx, md)
			for i, c := range fx.m.Chunks {
				want := 0
				if i >= 2 {
					want = 1
				}
				if got := in.Requests(c.File); got != want {
					t.Errorf("resumed load requested %s %d times, want %d", c.File, got, want)
				}
			}
		})
	}
}

// Retrying stops at once when the load is cancelled during a backoff wait.
func TestRetryCancelDuringBackoff(t *testing.T) {
	fx := writeFixture(t, t.TempDir())
	in, src := faultServer(t, fx)
	in.Always(fx.m.Chunks[0].File, faulthttp.Status500)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	_, err := Load(ctx, src, LoadOptions{Retry: &Retry{Attempts: 10, Backoff: time.Hour}, OnRetry: func(RetryEvent) {
		go cancel()
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("cancel during a 1 h backoff returned after %v", d)
	}
}

// Policies: HTTP sources retry by default, local ones do not (reading a file again changes nothing), a
// missing manifest fails at once (a wrong URL), a malformed one is not retried.
func TestRetryDefaults(t *testing.T) {
	fx := writeFixture(t, t.TempDir())
	if r := retryPolicy(HTTPSource("http://x", nil), LoadOptions{}); r != NetworkRetry() {
		t.Errorf("HTTP default policy %+v, want NetworkRetry %+v", r, NetworkRetry())
	}
	if r := retryPolicy(DirSource(fx.dir), LoadOptions{}); r.Attempts > 1 {
		t.Errorf("local default policy %+v retries", r)
	}
	in, src := faultServer(t, fx)
	in.Always(ManifestFile, faulthttp.Status404)
	if _, err := Load(context.Background(), src, LoadOptions{Retry: fastRetry()}); err == nil || in.Requests(ManifestFile) != 1 {
		t.Errorf("missing manifest: err %v after %d requests, want an error after 1", err, in.Requests(ManifestFile))
	}
	in.Reset()
	in.Queue(ManifestFile, faulthttp.Status500, faulthttp.Drop)
	if _, err := Load(context.Background(), src, LoadOptions{Retry: fastRetry()}); err != nil || in.Requests(ManifestFile) != 3 {
		t.Errorf("manifest failing twice: err %v after %d requests, want success after 3", err, in.Requests(ManifestFile))
	}
	in.Reset()
	in.Always(ManifestFile, faulthttp.Corrupt)
	_, err := Load(context.Background(), src, LoadOptions{Retry: fastRetry()})
	if err == nil || Retryable(err) || in.Requests(ManifestFile) != 1 {
		t.Errorf("corrupted manifest: err %v after %d requests, want a format error after 1", err, in.Requests(ManifestFile))
	}
}

// A retry asks for a URL of its own (&retry=n), so that an HTTP cache that kept the failed answer (a
// versioned chunk URL is cacheable forever) cannot serve it again.
func TestRetryBypassesHTTPCaches(t *testing.T) {
	fx := writeFixture(t, t.TempDir())
	c0 := fx.m.Chunks[0]
	in := faulthttp.New(http.FileServer(http.Dir(fx.dir)))
	in.Queue(c0.File, faulthttp.Corrupt, faulthttp.Status500)
	var mu sync.Mutex
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, c0.File) {
			mu.Lock()
			queries = append(queries, r.URL.RawQuery)
			mu.Unlock()
		}
		in.ServeHTTP(w, r)
	}))
	defer srv.Close()
	if _, err := Load(context.Background(), HTTPSource(srv.URL, srv.Client()), LoadOptions{Retry: fastRetry()}); err != nil {
		t.Fatal(err)
	}
	want := []string{"sha256=" + c0.SHA256, "sha256=" + c0.SHA256 + "&retry=2", "sha256=" + c0.SHA256 + "&retry=3"}
	if strings.Join(queries, " ") != strings.Join(want, " ") {
		t.Fatalf("queries %q, want %q", queries, want)
	}
}
