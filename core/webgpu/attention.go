package webgpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// attentionKernel is a variant of shaders/attention.wgsl: one workgroup of WG invocations per query row
// and head, each invocation owning DPT of the head's output dimensions. It serves head dimensions above
// attentionTiledMaxD (the VQVAE's single-head attention).
type attentionKernel struct {
	WG   int
	DPT  int
	Mask bool
}

// attentionTiledKernel is a variant of shaders/attention_tiled.wgsl: one workgroup of 256 invocations per
// 16 query rows of one head, keys and values staged 16 rows at a time and shared by those 16 queries. It
// serves head dimensions up to attentionTiledMaxD (VAR's transformer: 64).
type attentionTiledKernel struct {
	Mask bool
}

const (
	attentionTiledMaxD = 64
	attentionTiledBQ   = 16 // query rows per workgroup
)

const (
	attentionWG = 64
	// attentionMaxDPT bounds the private accumulators per invocation, hence head_dim <= 64*16 = 1024 (VAR
	// uses 64, the VQVAE's single-head attention 512..640). The query row also lives in workgroup memory:
	// 4 KiB at the maximum.
	attentionMaxDPT = 16
)

// Attention is softmax(q_h @ k_h^T * scale + mask) @ v_h per batch element and head: q [B, L, C], k and
// v [B, S, C], mask [L, S] or nil; out [B, L, C]. A fully masked row yields zeros.
func (b *Backend) Attention(q, k, v *core.Tensor, heads int, scale float32, mask *core.Tensor) (*core.Tensor, error) {
	return b.attention(q, k, v, -1, heads, scale, mask)
}

// AttentionPrefix is Attention without a mask over the first n rows of k and v [B, S, C] (0 <= n <= S):
// the same kernel, told that each batch element's rows are S apart but only n of them are attended to.
func (b *Backend) AttentionPrefix(q, k, v *core.Tensor, n, heads int, scale float32) (*core.Tensor, error) {
	if k != nil && len(k.Shape()) == 3 && (n < 0 || n > k.Dim(1)) {
		return nil, linalgShapeError("attention", "prefix of %d rows, want 0..%d for k %v", n, k.Dim(1), k.Shape())
	}
	return b.attention(q, k, v, n, heads, scale, nil)
}

// attention is Attention over the first n rows of k and v (all of them when n < 0).
func (b *Backend) attention(q, k, v *core.Tensor, n, heads int, scale float32, mask *core.Tensor) (*core.Tensor, error) {
	const op = "attention"
	b.mu.Lock()
	defer b.mu.Unlock()
	bufs := make([]*gpuBuf, 0, 5)
	for _, in := range []struct {
		name string
		t    *core.Tensor
	}{{"q", q}, {"k", k}, {"v", v}} {
		g, err := b.operand(op, in.name, in.t)
		if err != nil {
			return nil, err
		}
		bufs = append(bufs, g)
	}
	qs, ks := q.Shape(), k.Shape()
	if len(qs) != 3 || len(ks) != 3 || !ks.Equal(v.Shape()) || ks[0] != qs[0] || ks[2] != qs[2] {
		return nil, linalgShapeError(op, "want q [B, L, C] and k, v [B, S, C], got q %v, k %v, v %v", qs, ks, v.Shape())
	}
	B, L, S, C := qs[0], qs[1], ks[1], qs[2]
	kvRows := S
	if n >= 0 {
		S = n
	}
	if heads <= 0 || C%heads != 0 {
		return nil, linalgShapeError(op, "%d heads do not divide %d channels", heads, C)
	}
	d := C / heads
	if mask != nil {
		g, err := b.operand(op, "mask", mask)
		if err != nil {
			return nil, err
		}
		if !mask.Shape().Equal(core.Shape{L, S}) {
			return nil, linalgShapeError(op, "mask %v, want [%d, %d] for q %v and k %v", mask.Shape(), L, S, qs, ks)
		}
		bufs = append(bufs, g)
	}
	dpt := max((d+attentionWG-1)/attentionWG, 1)
	if dpt > attentionMaxDPT {
		return nil, fmt.Errorf("%s: head dimension %d exceeds the kernel's %d: %w", op, d, attentionWG*attentionMaxDPT, core.ErrUnsupported)
	}
	rows := B * heads * L
	out, err := b.alloc(uint64(max(B*L*C, 1))*4, op)
	if err != nil {
		return nil, err
	}
	if rows > 0 && d > 0 {
		bufs = append(bufs, out)
		var kern kernel
		var u []uint32
		var grid [3]uint32
		if d <= attentionTiledMaxD {
			qblocks := (L + attentionTiledBQ - 1) / attentionTiledBQ
			groups := B * heads * qblocks
			kern = kernel{file: "attention_tiled.wgsl", params: attentionTiledKernel{Mask: mask != nil},
				inputs: len(bufs) - 1, outputs: 1}
			u = []uint32{uint32(qblocks), uint32(L), uint32(S), uint32(C), uint32(heads), uint32(d), f32bits(scale),
				uint32(kvRows), uint32(groups)}
			grid = grid1D(groups, 1)
		} else {
			kern = kernel{file: "attention.wgsl", params: attentionKernel{WG: attentionWG, DPT: dpt, Mask: mask != nil},
				inputs: len(bufs) - 1, outputs: 1}
			u = []uint32{uint32(rows), uint32(L), uint32(S), uint32(C), uint32(heads), uint32(d), f32bits(scale), uint32(kvRows)}
			grid = grid1D(rows, 1)
		}
		if err := b.dispatch(op, kern, u, bufs, grid); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(core.Shape{B, L, C}, out), nil
}

// qkvCacheKernel is a variant of shaders/qkv_cache.wgsl: one workgroup of WG invocations per (row, head).
type qkvCacheKernel struct {
	WG    int
	Norm  bool
	Scale bool
}

var _ core.FusedQKVToCache = (*Backend)(nil)

// QKVToCache returns q from qkv [B, l, 3C] and writes k and v into rows [n, n+l) of kc, vc [B, S, C],
// L2-normalising q and k per head (q times qScale[h]) when norm: one dispatch instead of seven
// (core.FusedQKVToCache).
func (b *Backend) QKVToCache(qkv *core.Tensor, heads int, norm bool, qScale, kc, vc *core.Tensor, n int) (*core.Tensor, error) {
	const op = "qkv"
	b.mu.Lock()
	defer b.mu.Unlock()
	var bufs []*gpuBuf
	for _, in := range []struct {
		name string
		t    *core.Tensor
	}{{"qkv", qkv}, {"kc", kc}, {"vc", vc}} {
		g, err := b.operand(op, in.name, in.t)
		if err != nil {
			return nil, err
		}
		bufs = append(bufs, g)
	}
	xg, kg, vg := bufs[0], bufs[1], bufs[2]
	s, ks := qkv.Shape(), kc.Shape()
	if len(s) != 3 || s[2]%3 != 0 || len(ks) != 3 || !ks.Equal(vc.Shape()) || ks[0] != s[0] || ks[2]*3 != s[2] {
		return nil, linalgShapeError(op, "want qkv [B, l, 3C] and caches [B, S, C], got qkv %v, k %v, v %v", s, ks, vc.Shape())
	}
	B, l, C, S := s[0], s[1], ks[2], ks[1]
	if n < 0 || n+l > S {
		return nil, linalgShapeError(op, "rows [%d, %d) are outside the caches %v", n, n+l, ks)
	}
	if heads <= 0 || C%heads != 0 {
		return nil, linalgShapeError(op, "%d heads do not divide %d channels", heads, C)
	}
	if kg == vg || kg == xg || vg == xg {
		return nil, fmt.Errorf("%s: qkv and the caches must be distinct buffers: %w", op, core.ErrUnsupported)
	}
	ins := []*gpuBuf{xg}
	if norm && qScale != nil {
		sg, err := b.operand(op, "scale", qScale)
		if err != nil {
			return nil, err
		}
		if !qScale.Shape().Equal(core.Shape{heads}) {
			return nil, linalgShapeError(op, "scale %v, want [%d]", qScale.Shape(), heads)
		}
		ins = append(ins, sg)
	}
	out, err := b.alloc(uint64(max(B*l*C, 1))*4, op)
	if err != nil {
		return nil, err
	}
	d := C / heads
	chunks := B * l * heads
	if chunks > 0 && d > 0 {
		k := kernel{file: "qkv_cache.wgsl", params: qkvCacheKernel{WG: normalizeWG, Norm: norm, Scale: norm && qScale != nil},
			inputs: len(ins), outputs: 3}
		u := []uint32{uint32(chunks), uint32(d), uint32(heads), uint32(C), uint32(l), uint32(S), uint32(n), 0}
		// record, not dispatch: a failure must free q only, never the caches.
		if err := b.record(op, k, u, append(ins, out, kg, vg), grid1D(chunks, 1)); err != nil {
			b.freeLocked(out)
			return nil, err
		}
	}
	return core.NewTensor(core.Shape{B, l, C}, out), nil
}
