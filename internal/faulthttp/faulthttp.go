// Package faulthttp puts a fault-injecting handler in front of another: tests use it to make a server drop
// a connection in the middle of a file, answer with an error status, or send wrong bytes, for the requests
// they choose, and to count the requests each file got.
package faulthttp

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"
)

// Fault is what happens to one request.
type Fault int

const (
	// Pass serves the request untouched.
	Pass Fault = iota
	// Drop sends the status line, the full Content-Length and half the body, then closes the connection.
	Drop
	// Status500 answers 500 Internal Server Error.
	Status500
	// Status404 answers 404 Not Found.
	Status404
	// Corrupt sends the full body with one byte in the middle flipped.
	Corrupt
	// Truncate sends the first half of the body as if it were all of it (a consistent, shorter response).
	Truncate
)

func (f Fault) String() string {
	switch f {
	case Pass:
		return "pass"
	case Drop:
		return "drop"
	case Status500:
		return "500"
	case Status404:
		return "404"
	case Corrupt:
		return "corrupt"
	case Truncate:
		return "truncate"
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// Injector is an http.Handler serving Next with the faults queued for each file. A file is named either by
// its full request path ("/models/a/chunk-00001.bin": that file only) or by the last element of the path
// ("chunk-00001.bin": that name under any directory); a fault for the full path is taken first. Safe for
// concurrent use.
type Injector struct {
	Next http.Handler

	mu       sync.Mutex
	queued   map[string][]Fault // consumed one per request, in order
	always   map[string]Fault
	requests map[string]int // by full request path
	injected int
}

// New returns an Injector in front of next with no faults.
func New(next http.Handler) *Injector {
	return &Injector{Next: next, queued: map[string][]Fault{}, always: map[string]Fault{}, requests: map[string]int{}}
}

// Queue makes the next len(faults) requests for file fail with faults, in order; later ones pass.
func (in *Injector) Queue(file string, faults ...Fault) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.queued[file] = append(in.queued[file], faults...)
}

// Always makes every request for file fail with f (Pass stops it).
func (in *Injector) Always(file string, f Fault) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if f == Pass {
		delete(in.always, file)
		return
	}
	in.always[file] = f
}

// Reset drops every fault and the counts.
func (in *Injector) Reset() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.queued, in.always, in.requests, in.injected = map[string][]Fault{}, map[string]Fault{}, map[string]int{}, 0
}

// Requests returns how many requests file (a full path, or a name under any directory) got.
func (in *Injector) Requests(file string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for p, c := range in.requests {
		if p == file || !strings.Contains(file, "/") && path.Base(p) == file {
			n += c
		}
	}
	return n
}

// Injected returns how many requests got a fault.
func (in *Injector) Injected() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.injected
}

func (in *Injector) next(urlPath string) Fault {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.requests[urlPath]++
	f := Pass
	for _, key := range []string{urlPath, path.Base(urlPath)} {
		if q := in.queued[key]; len(q) > 0 {
			f, in.queued[key] = q[0], q[1:]
			break
		}
		if a, ok := in.always[key]; ok {
			f = a
			break
		}
	}
	if f != Pass {
		in.injected++
	}
	return f
}

func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := in.next(r.URL.Path)
	switch f {
	case Pass:
		in.Next.ServeHTTP(w, r)
		return
	case Status500:
		http.Error(w, "injected fault", http.StatusInternalServerError)
		return
	case Status404:
		http.NotFound(w, r)
		return
	}
	// The other faults change the body of a good response.
	rec := httptest.NewRecorder()
	in.Next.ServeHTTP(rec, r)
	res := rec.Result()
	body := rec.Body.Bytes()
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	if res.StatusCode != http.StatusOK || len(body) < 2 {
		w.WriteHeader(res.StatusCode)
		w.Write(body)
		return
	}
	switch f {
	case Corrupt:
		body = bytes.Clone(body)
		body[len(body)/2] ^= 0x5a
	case Truncate:
		body = body[:len(body)/2]
	case Drop:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		// ErrAbortHandler makes the server close the connection without logging a panic.
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}
