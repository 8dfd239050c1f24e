package weights

import "io"

// httpBody is an HTTP response body that, in the browser, is not closed after a failed read: Go's fetch
// transport (net/http roundtrip_js.go) closes by calling the stream reader's cancel() and drops the
// promise it returns, which a stream that already failed (a dropped connection) rejects: an "Uncaught
// (in promise) TypeError: network error" in the console for a failure the loader has handled (it retries).
// A failed stream holds nothing to release. Elsewhere Close always closes.
type httpBody struct {
	rc     io.ReadCloser
	failed bool
}

func (b *httpBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.failed = true
	}
	return n, err
}

func (b *httpBody) Close() error {
	if b.failed && closeSkipsFailedBody {
		return nil
	}
	return b.rc.Close()
}
