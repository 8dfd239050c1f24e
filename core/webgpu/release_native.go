//go:build !js

package webgpu

import "github.com/cogentcore/webgpu/wgpu"

// releaseBuffer drops a buffer once no pending work needs it. Natively Release frees it when the GPU is
// done with it.
func releaseBuffer(buf *wgpu.Buffer) { buf.Release() }
