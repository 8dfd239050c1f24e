package webgpu

import (
	"testing"

	"github.com/webvar/webvar/core"
)

// ReleaseIdle empties the pool: later outputs get new buffers, and work queued before the release that
// reads a released buffer still sees its contents (the release submits it first).
func TestReleaseIdle(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	const n = 1 << 18 // elements: a 1 MiB bucket
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(i % 251)
	}
	x, err := b.Upload(core.HostTensor{Shape: core.Shape{n}, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	o := core.NewOps(b)
	// y and z are pooled once freed; w reads y in work that is still queued when y's buffer goes.
	y := o.Add(x, x)
	z := o.Add(y, x)
	w := o.Add(y, y)
	o.Free(z, y)
	before := b.MemoryStats()
	if before.Pooled != 2*4*n {
		t.Fatalf("pooled %d bytes, want %d", before.Pooled, 2*4*n)
	}
	o.ReleaseIdle()
	after := b.MemoryStats()
	if after.Pooled != 0 || after.PoolBuffers != 0 || after.Released != before.Released+2 || after.Live != before.Live {
		t.Errorf("after ReleaseIdle: pooled %d bytes in %d buffers, released %d (was %d), live %d (was %d)",
			after.Pooled, after.PoolBuffers, after.Released, before.Released, after.Live, before.Live)
	}
	got := o.Download(w)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	for i, v := range got.Data {
		if want := 4 * data[i]; v != want {
			t.Fatalf("w[%d] = %v, want %v: a released buffer was read", i, v, want)
		}
	}
	again := o.Zeros(n) // a new buffer, zeroed
	if s := b.MemoryStats(); s.Created != after.Created+1 {
		t.Errorf("created %d buffers after the release, want 1", s.Created-after.Created)
	}
	o.Free(again, w, x)
	o.ReleaseIdle() // with nothing pending
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
}
