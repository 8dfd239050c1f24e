//go:build js

package webgpu

import (
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"
)

// writeBufferLocked writes data into dst at off (bytes) ahead of any work submitted later. The binding's
// Queue.WriteBuffer is not used in the browser: it hands writeBuffer a view of the wasm memory, which is
// detached if the Go heap grows before the call, and Chromium then rejects the write ("Number of bytes to
// write is too large"). CreateBufferInit copies the bytes into the mapped range instead, so the data goes
// through a staging buffer and a copy submitted on its own.
func (b *Backend) writeBufferLocked(dst *wgpu.Buffer, off uint64, data []byte) error {
	staging, err := b.dev.CreateBufferInit(&wgpu.BufferInitDescriptor{Label: "upload staging", Contents: data,
		Usage: wgpu.BufferUsageCopySrc})
	if err != nil {
		return fmt.Errorf("staging %d bytes: %w", len(data), err)
	}
	defer releaseBuffer(staging)
	enc, err := b.dev.CreateCommandEncoder(nil)
	if err != nil {
		return err
	}
	defer enc.Release()
	if err := enc.CopyBufferToBuffer(staging, 0, dst, off, uint64(len(data))); err != nil {
		return err
	}
	cmd, err := enc.Finish(nil)
	if err != nil {
		return err
	}
	b.queue.Submit(cmd)
	cmd.Release()
	return nil
}
