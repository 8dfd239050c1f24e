package nn

import "github.com/webvar/webvar/core"

// KVCache holds each block's keys and values, [B, S, C]: allocated once per generation at the full
// sequence length S; rows [0, N) hold the tokens of the steps run so far and each step writes its rows
// after them (WriteRows). Growing the cache by concatenation instead would free a buffer of every
// intermediate length at every step, which a buffer pool (webgpu) keeps: ~480 MB for VAR-d16.
type KVCache struct {
	K, V []*core.Tensor
	N    int
}

// NewKVCache allocates the caches of depth blocks for a batch of bsz rows of up to s tokens of width c.
func NewKVCache(o *core.Ops, depth, bsz, s, c int) *KVCache {
	kv := &KVCache{K: make([]*core.Tensor, depth), V: make([]*core.Tensor, depth)}
	for i := 0; i < depth; i++ {
		kv.K[i], kv.V[i] = o.Zeros(bsz, s, c), o.Zeros(bsz, s, c)
	}
	return kv
}

// Free releases the caches; freeing twice is a no-op.
func (kv *KVCache) Free(o *core.Ops) {
	o.Free(kv.K...)
	o.Free(kv.V...)
	clear(kv.K)
	clear(kv.V)
}
