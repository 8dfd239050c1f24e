package webgpu

import (
	"cmp"
	"slices"
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
	Peak          uint64      `json:"peak"`    // largest Live + Pooled so far (PeakBytes)
	Largest       uint64      `json:"largest"` // largest single buffer allocated so far
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
	s := MemoryStats{Live: b.live, Uploaded: b.uploaded, Pooled: b.pooled, Peak: b.peak,
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
	if b.live+b.pooled > b.peak {
		b.peak = b.live + b.pooled
		b.atPeak = b.statsLocked()
	}
}
