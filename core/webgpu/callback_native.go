//go:build !js

package webgpu

import (
	"runtime/debug"
	"sync"
)

// gcHold keeps Go's garbage collector off while a wgpu-native callback registered through the binding is
// outstanding (a buffer mapping or a queue-done notification, until the Poll that runs it). The v0.23.0
// binding passes wgpu-native a pointer to a heap copy of the callback's cgo.Handle that nothing in Go
// references after MapAsync/OnSubmittedWorkDone return; a collection in between frees it, and the
// callback then reads a reused word and panics ("misuse of an invalid Handle"). That happens as soon as
// another goroutine allocates steadily while we wait: ebiten's window in webvar preview. Like `instance`,
// this is process-wide state on purpose, reference-counted for several backends. Waits are milliseconds on
// a GPU (seconds on lavapipe), so the heap cannot grow much meanwhile.
var gcHold struct {
	sync.Mutex
	n       int
	percent int // the GC percent to restore
}

// holdGC turns the collector off until the returned func is called.
func holdGC() (release func()) {
	gcHold.Lock()
	if gcHold.n == 0 {
		gcHold.percent = debug.SetGCPercent(-1)
	}
	gcHold.n++
	gcHold.Unlock()
	return func() {
		gcHold.Lock()
		if gcHold.n--; gcHold.n == 0 {
			debug.SetGCPercent(gcHold.percent)
		}
		gcHold.Unlock()
	}
}
