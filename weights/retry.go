package weights

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Retry is how Load retries a file (a chunk or the manifest) whose download failed (ErrIO: a dropped
// connection, an HTTP error status) or whose bytes did not verify (ErrIntegrity: truncated, oversized or a
// wrong SHA-256). It waits Backoff before the first retry and twice as long before each next one, at most
// MaxBackoff; a cancelled context ends the wait at once. Malformed manifests (ErrFormat, ErrUnsupported)
// are never retried: fetching them again gives the same bytes.
type Retry struct {
	Attempts   int           // tries per file in all; 1 or less: no retry
	Backoff    time.Duration // wait before the first retry
	MaxBackoff time.Duration // longest wait; 0: no limit
}

// NetworkRetry is the policy HTTP sources get by default: five tries, after waits of 0.25, 0.5, 1 and 2 s.
func NetworkRetry() Retry {
	return Retry{Attempts: 5, Backoff: 250 * time.Millisecond, MaxBackoff: 4 * time.Second}
}

// RetryEvent reports a failed try that Load is about to repeat.
type RetryEvent struct {
	File     string        // the chunk file (or ManifestFile)
	Attempt  int           // the try that failed, from 1
	Attempts int           // tries allowed in all
	Wait     time.Duration // the wait before the next try
	Err      error         // why the try failed (*Error)
}

// String is a line for a status bar: "chunk-00003.bin: try 1/5 failed (weights I/O error: ...); retrying in 0.25 s".
func (e RetryEvent) String() string {
	return fmt.Sprintf("%s: try %d/%d failed (%v); retrying in %.2g s", e.File, e.Attempt, e.Attempts, e.Err, e.Wait.Seconds())
}

// retryPolicy is opt.Retry, or for a nil one the source's default: NetworkRetry for HTTP sources, none
// for local ones (reading a file again does not change its bytes).
func retryPolicy(src Source, opt LoadOptions) Retry {
	if opt.Retry != nil {
		return *opt.Retry
	}
	if _, ok := src.(*httpSource); ok {
		return NetworkRetry()
	}
	return Retry{Attempts: 1}
}

// Retryable reports whether err is a failure that trying the same file again may cure: an I/O error or
// bytes that did not verify. Front ends offer "try again" for these rather than a dead end.
func Retryable(err error) bool {
	return errors.Is(err, ErrIO) || errors.Is(err, ErrIntegrity)
}

// withRetry runs try until it succeeds, fails for good, the tries run out or ctx is done. The error after
// the last try names the file and how many tries were made.
// retryable decides which errors are worth another try.
func withRetry[T any](ctx context.Context, r Retry, file string, onRetry func(RetryEvent), retryable func(error) bool, try func() (T, error)) (T, error) {
	attempts := max(r.Attempts, 1)
	wait := r.Backoff
	for attempt := 1; ; attempt++ {
		v, err := try()
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return v, err
		}
		if attempt >= attempts {
			if attempts > 1 {
				err = gaveUp(err, file, attempts)
			}
			return v, err
		}
		if onRetry != nil {
			onRetry(RetryEvent{File: file, Attempt: attempt, Attempts: attempts, Wait: wait, Err: err})
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
		wait *= 2
		if r.MaxBackoff > 0 {
			wait = min(wait, r.MaxBackoff)
		}
	}
}

// manifestRetryable is Retryable less a missing manifest: a wrong weights URL should fail at once, not
// after the backoff (a missing chunk of an existing manifest is retried: a mirror may be catching up).
func manifestRetryable(err error) bool {
	return Retryable(err) && !errors.Is(err, fs.ErrNotExist)
}

// gaveUp adds the file and the number of tries to the last try's error.
func gaveUp(err error, file string, attempts int) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		if c.Chunk == "" {
			c.Chunk = file
		}
		c.Msg = fmt.Sprintf("%s (gave up after %d tries)", c.Msg, attempts)
		return &c
	}
	return &Error{Kind: ErrIO, Chunk: file, Msg: fmt.Sprintf("gave up after %d tries", attempts), Err: err}
}
