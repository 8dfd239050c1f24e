package webgpu

import (
	"cmp"
	"slices"
	"time"
)

// MemoryStats breaks the backend's GPU buffer memory down (a debugging aid: `webvar bench -json` reports
// it as gpu_memory). All sizes are in bytes.
type MemoryStats struct {
	Live     uint64 `json:"live"`     // buffers of live tensors (op outputs count their pool bucket's size)
	Uploaded uint64 `json:"uploaded"` // of Live: exactly sized uploads, i.e. the weights and host inputs
	Pooled   uint64 `json:"pooled"`   // freed op outputs kept for reuse
	// PoolBuffers and PoolSizes count the pool's buffers and its distinct bucket sizes: a buffer is only
	// reused for an output of the same bucket, so many sizes mean memory that sits idle.
	PoolBuffers int `json:"pool_buffers"`
	PoolSizes   int `json:"pool_sizes"`
	// Created counts the op output buffers created so far and Released the idle ones given back by
	// ReleaseIdle: the pool's churn (a released buffer is one a later op may have to create again).
	Created  int `json:"created"`
	Released int `json:"released"`
	// PoolBySize and OutputsBySize count buffers per bucket size: the pool's free ones and those of live
	// op outputs (Live less Uploaded), largest first. They show which tensors hold the memory.
	PoolBySize    []SizeCount `json:"pool_by_size,omitempty"`
	OutputsBySize []SizeCount `json:"outputs_by_size,omitempty"`
	// Readback is the mappable buffer downloads copy through, kept between them and grown to the
	// largest download so far (for VAR-d16 the last scale's logits, 8.4 MB).
	Readback uint64 `json:"readback"`
	Peak     uint64 `json:"peak"`    // largest Live + Pooled + Readback so far (PeakBytes)
	Largest  uint64 `json:"largest"` // largest single buffer allocated so far
	// AtPeak is the breakdown at the moment Peak was reached (its own AtPeak and Largest are zero).
	AtPeak *MemoryStats `json:"at_peak,omitempty"`
}

// SizeCount is a number of buffers of one size (bytes).
type SizeCount struct {
	Size  uint64 `json:"size"`
	Count int    `json:"count"`
}

// MemoryStats returns the current breakdown and the one at the peak.
func (b *Backend) MemoryStats() MemoryStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.statsLocked()
	at := b.atPeak
	s.AtPeak, s.Largest = &at, b.largest
	return s
}

func (b *Backend) statsLocked() MemoryStats {
	s := MemoryStats{Live: b.live, Uploaded: b.uploaded, Pooled: b.pooled, Readback: b.stagingSize, Peak: b.peak,
		Created: b.created, Released: b.released}
	for size, l := range b.pool {
		if len(l) > 0 {
			s.PoolBuffers += len(l)
			s.PoolSizes++
			s.PoolBySize = append(s.PoolBySize, SizeCount{size, len(l)})
		}
	}
	for size, n := range b.outputs {
		if n > 0 {
			s.OutputsBySize = append(s.OutputsBySize, SizeCount{size, n})
		}
	}
	bySizeDown := func(a, c SizeCount) int { return cmp.Compare(c.Size, a.Size) }
	slices.SortFunc(s.PoolBySize, bySizeDown)
	slices.SortFunc(s.OutputsBySize, bySizeDown)
	return s
}

// notePeakLocked records a new allocation of n bytes: the largest buffer, and the breakdown when the
// peak rises (counting the pool's buffers is O(sizes), paid only then).
func (b *Backend) notePeakLocked(n uint64) {
	b.largest = max(b.largest, n)
	if total := b.live + b.pooled + b.stagingSize; total > b.peak {
		b.peak = total
		b.atPeak = b.statsLocked()
	}
}

// HostTimes is where the host's time went in the backend's calls so far (a profiling aid: `webvar bench
// -json` reports it as gpu_host for the timed runs). Wait is time spent waiting for the device (the GPU's
// own work and its latency); the rest is host-side work that the GPU may or may not overlap.
type HostTimes struct {
	Record      time.Duration `json:"record_ns"`  // encoding dispatches (bind groups, pass commands)
	Submit      time.Duration `json:"submit_ns"`  // finishing and submitting command buffers
	Create      time.Duration `json:"create_ns"`  // creating buffers (pool misses, the readback buffer)
	Wait        time.Duration `json:"wait_ns"`    // polling until readbacks and Finish complete
	Copy        time.Duration `json:"copy_ns"`    // copying mapped readbacks out
	Dispatches  int           `json:"dispatches"` // kernel dispatches recorded
	Submissions int           `json:"submissions"`
}

// Sub is t - u, field by field (the times of a span between two readings).
func (t HostTimes) Sub(u HostTimes) HostTimes {
	return HostTimes{Record: t.Record - u.Record, Submit: t.Submit - u.Submit, Create: t.Create - u.Create,
		Wait: t.Wait - u.Wait, Copy: t.Copy - u.Copy, Dispatches: t.Dispatches - u.Dispatches,
		Submissions: t.Submissions - u.Submissions}
}

// Per is t divided by n runs (rounded down), for per-image figures.
func (t HostTimes) Per(n int) HostTimes {
	if n < 1 {
		return t
	}
	d := time.Duration(n)
	return HostTimes{Record: t.Record / d, Submit: t.Submit / d, Create: t.Create / d, Wait: t.Wait / d,
		Copy: t.Copy / d, Dispatches: t.Dispatches / n, Submissions: t.Submissions / n}
}

// HostTimes returns the accumulated host times.
func (b *Backend) HostTimes() HostTimes {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.host
}
