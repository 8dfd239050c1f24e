package gen

import (
	"fmt"
	"runtime/debug"
)

// PanicError is a panic inside a generation, returned as an error by Safely. Error is one line; Stack
// holds where it happened, for a log or a bug report.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("internal error in the generation: %v", e.Value)
}

// Safely runs one generation and turns a panic inside it into a *PanicError, so that a front end survives
// a backend that fails by panicking (the browser's WebGPU binding panics on a JavaScript exception, e.g.
// mapping a buffer of a device that was destroyed mid-run) and can report the failure, or recover from
// the device loss behind it, instead of losing its worker goroutine or the whole program.
func Safely(run func() (*Result, error)) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return run()
}
