//go:build js

package webgpu

// holdGC is a no-op in the browser: the js binding keeps its callbacks referenced (callback_native.go).
func holdGC() (release func()) { return func() {} }
