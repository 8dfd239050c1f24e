//go:build js

package webgpu

import "github.com/cogentcore/webgpu/wgpu"

// releaseBuffer frees a buffer in the browser, where the binding's Release is a no-op and only destroy()
// returns the memory. Callers only release buffers whose commands were already submitted, and the browser
// keeps a destroyed buffer alive until submitted work that uses it has finished.
func releaseBuffer(buf *wgpu.Buffer) { buf.Destroy() }
