package webgpu

// MemoryStats breaks the backend's GPU buffer memory down (a debugging aid: `webvar bench -json` reports
// it as gpu_memory). All sizes are in bytes.
type MemoryStats struct {
	Live     uint64 `json:"live"`     // buffers of live tensors (op outputs count their pool bucket's size)
	Uploaded uint64 `json:"uploaded"` // of Live: exactly sized uploads, i.e. the weights and host inputs
	Pooled   uint64 `json:"pooled"`   // freed op outputs kept for reuse
	// PoolBuffers and PoolSizes count the pool's buffers and its distinct bucket sizes: a buffer is only
	// reused for an output of the same bucket, so many sizes mean memory that sits idle.
	PoolBuffers int    `json:"pool_buffers"`
	PoolSizes   int    `json:"pool_sizes"`
	Peak        uint64 `json:"peak"`    // largest Live + Pooled so far (PeakBytes)
	Largest     uint64 `json:"largest"` // largest single buffer allocated so far
	// AtPeak is the breakdown at the moment Peak was reached (its own AtPeak and Largest are zero).
	AtPeak *MemoryStats `json:"at_peak,omitempty"`
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
	s := MemoryStats{Live: b.live, Uploaded: b.uploaded, Pooled: b.pooled, Peak: b.peak}
	for _, l := range b.pool {
		if len(l) > 0 {
			s.PoolBuffers += len(l)
			s.PoolSizes++
		}
	}
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
