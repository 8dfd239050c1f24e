//go:build !js

package webgpu

import "github.com/cogentcore/webgpu/wgpu"

// writeBufferLocked queues a write of data into dst at off (bytes); it lands before any work submitted
// after it.
func (b *Backend) writeBufferLocked(dst *wgpu.Buffer, off uint64, data []byte) error {
	return b.queue.WriteBuffer(dst, off, data)
}
