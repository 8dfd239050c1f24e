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

// The readback buffer downloads copy through is GPU memory too: MemoryStats counts it and the peak
// includes it; it grows to the largest download and is kept for the next one.
func TestReadbackBufferIsCounted(t *testing.T) {
	b := newTestBackend(t)
	b.guard = 0
	const n = 1 << 16 // elements
	x, err := b.Upload(core.HostTensor{Shape: core.Shape{n}, Data: make([]float32, n)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(x)
	if s := b.MemoryStats(); s.Readback != 0 {
		t.Fatalf("readback %d bytes before any download", s.Readback)
	}
	if _, err := b.Download(x); err != nil {
		t.Fatal(err)
	}
	s := b.MemoryStats()
	if s.Readback < 4*n {
		t.Errorf("readback %d bytes after downloading %d", s.Readback, 4*n)
	}
	if s.Peak < s.Live+s.Pooled+s.Readback || b.PeakBytes() != s.Peak {
		t.Errorf("peak %d (PeakBytes %d), want at least live %d + pooled %d + readback %d", s.Peak, b.PeakBytes(), s.Live, s.Pooled, s.Readback)
	}
	if _, err := b.Download(x); err != nil {
		t.Fatal(err)
	}
	if again := b.MemoryStats(); again.Readback != s.Readback || again.Peak != s.Peak {
		t.Errorf("a second download of the same size changed readback %d -> %d, peak %d -> %d", s.Readback, again.Readback, s.Peak, again.Peak)
	}
}
