package webgpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// normKernel is a variant of shaders/norm.wgsl: one workgroup normalises one contiguous row (a LayerNorm
// row, or a GroupNorm (batch element, group) block), optionally with an affine and SiLU.
type normKernel struct {
	WG     int
	Affine bool // multiply by w[c]
	Bias   bool // then add b[c] (with Affine only)
	SiLU   bool
}

// normalizeKernel is a variant of shaders/normalize.wgsl: one workgroup L2-normalises one head chunk.
type normalizeKernel struct {
	WG    int
	Scale bool
}

const (
	// normWG: rows of the models are 1024+ values (LayerNorm) up to millions (GroupNorm), so a full
	// workgroup per row.
	normWG = 256
	// normalizeWG matches VAR's head_dim of 64: one value per invocation.
	normalizeWG = 64
)

// LayerNorm normalizes x [..., C] over its last dimension (no affine, biased variance).
func (b *Backend) LayerNorm(x *core.Tensor, eps float32) (*core.Tensor, error) {
	return b.layerNorm(x, nil, nil, eps)
}

// LayerNormAffine is LayerNorm times w [C], plus b [C] unless b is nil.
func (b *Backend) LayerNormAffine(x, w, bias *core.Tensor, eps float32) (*core.Tensor, error) {
	if w == nil {
		return nil, fmt.Errorf("layernorm: w is nil (LayerNorm is the op without affine parameters)")
	}
	return b.layerNorm(x, w, bias, eps)
}

// layerNorm is LayerNorm and LayerNormAffine: w and bias are each [C] or nil (not applied); bias only
// with w. The affine is the GroupNorm variant's with one channel per value (hw = groups = 1).
func (b *Backend) layerNorm(x, w, bias *core.Tensor, eps float32) (*core.Tensor, error) {
	const op = "layernorm"
	b.mu.Lock()
	defer b.mu.Unlock()
	xb, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) < 1 || xs[len(xs)-1] == 0 {
		return nil, linalgShapeError(op, "x %v needs a non-empty last dimension", xs)
	}
	C := xs[len(xs)-1]
	bufs := []*gpuBuf{xb}
	for _, p := range []struct {
		name string
		t    *core.Tensor
	}{{"w", w}, {"b", bias}} {
		if p.t == nil {
			continue
		}
		g, err := b.operand(op, p.name, p.t)
		if err != nil {
			return nil, err
		}
		if !p.t.Shape().Equal(core.Shape{C}) {
			return nil, linalgShapeError(op, "%s %v, want [%d] for x %v", p.name, p.t.Shape(), C, xs)
		}
		bufs = append(bufs, g)
	}
	rows := xs.Numel() / C
	k := normKernel{WG: normWG, Affine: w != nil, Bias: bias != nil}
	return b.rowNorm(op, k, xs, rows, C, 1, 1, eps, bufs)
}

// GroupNorm normalizes x [B, C, H, W] over groups of C/groups channels, applies w, b [C], then SiLU when
// silu is true.
func (b *Backend) GroupNorm(x *core.Tensor, groups int, w, bias *core.Tensor, eps float32, silu bool) (*core.Tensor, error) {
	const op = "groupnorm"
	b.mu.Lock()
	defer b.mu.Unlock()
	xb, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	wb, err := b.operand(op, "w", w)
	if err != nil {
		return nil, err
	}
	bb, err := b.operand(op, "b", bias)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 4 {
		return nil, linalgShapeError(op, "want x [B, C, H, W], got %v", xs)
	}
	B, C, HW := xs[0], xs[1], xs[2]*xs[3]
	if groups <= 0 || C%groups != 0 {
		return nil, linalgShapeError(op, "%d groups do not divide the %d channels of x %v", groups, C, xs)
	}
	if !w.Shape().Equal(core.Shape{C}) || !bias.Shape().Equal(core.Shape{C}) {
		return nil, linalgShapeError(op, "w %v and b %v, want [%d] for x %v", w.Shape(), bias.Shape(), C, xs)
	}
	if HW == 0 {
		return nil, linalgShapeError(op, "x %v has no pixels", xs)
	}
	n := C / groups * HW
	if n > groupNormSplitAbove {
		return b.groupNormSplit(op, xs, B*groups, n, HW, groups, eps, silu, xb, wb, bb)
	}
	k := normKernel{WG: normWG, Affine: true, Bias: true, SiLU: silu}
	return b.rowNorm(op, k, xs, B*groups, n, HW, groups, eps, []*gpuBuf{xb, wb, bb})
}

// groupNormKernel is a variant of shaders/groupnorm_split.wgsl.
type groupNormKernel struct {
	Pass string // "stats" or "apply"
	SiLU bool
}

// groupNormSplitAbove is the group length (values) above which GroupNorm splits each group over many
// workgroups (groupnorm_split.wgsl) instead of one per group (norm.wgsl). The VQVAE decoder's groups run
// from 20480 values (640 channels at 16x16) to 327680 (160 channels at 256x256).
const groupNormSplitAbove = 16384

// groupNormChunk is the chunk of a split group: 4096 values (16 per invocation), or more for groups so
// long that combining over 128 chunks per workgroup would start to cost.
func groupNormChunk(n int) int {
	ch := (n + 127) / 128
	ch = (ch + normWG - 1) / normWG * normWG
	return max(ch, 4096)
}

// groupNormSplit is GroupNorm over rows of n values as two dispatches: per-chunk statistics, then the
// combination and the normalisation of every chunk (shaders/groupnorm_split.wgsl).
func (b *Backend) groupNormSplit(op string, s core.Shape, rows, n, hw, groups int, eps float32, silu bool, xb, wb, bb *gpuBuf) (*core.Tensor, error) {
	ch := groupNormChunk(n)
	chunks := (n + ch - 1) / ch
	total := rows * chunks
	stats, err := b.alloc(uint64(total)*16, op+" statistics")
	if err != nil {
		return nil, err
	}
	defer b.freeLocked(stats) // pending dispatches still read it: the pool hands it out only after them
	out, err := b.alloc(uint64(rows*n)*4, op)
	if err != nil {
		return nil, err
	}
	u := []uint32{uint32(rows), uint32(n), uint32(hw), uint32(groups), f32bits(eps), uint32(ch), uint32(chunks), uint32(total)}
	grid := grid1D(total, 1)
	kern := kernel{file: "groupnorm_split.wgsl", params: groupNormKernel{Pass: "stats"}, inputs: 1, outputs: 1}
	if err := b.dispatch(op, kern, u, []*gpuBuf{xb, stats}, grid); err != nil {
		b.freeLocked(out)
		return nil, err
	}
	kern = kernel{file: "groupnorm_split.wgsl", params: groupNormKernel{Pass: "apply", SiLU: silu}, inputs: 4, outputs: 1}
	if err := b.dispatch(op, kern, u, []*gpuBuf{xb, stats, wb, bb, out}, grid); err != nil {
		return nil, err
	}
	return core.NewTensor(s, out), nil
}

// rowNorm runs norm.wgsl over rows of n contiguous values of a tensor of shape s (hw and groups matter to
// the affine variant only).
func (b *Backend) rowNorm(op string, k normKernel, s core.Shape, rows, n, hw, groups int, eps float32, ins []*gpuBuf) (*core.Tensor, error) {
	out, err := b.alloc(uint64(max(rows*n, 1))*4, op)
	if err != nil {
		return nil, err
	}
	if rows > 0 && n > 0 {
		kern := kernel{file: "norm.wgsl", params: k, inputs: len(ins), outputs: 1}
		u := []uint32{uint32(rows), uint32(n), uint32(hw), uint32(groups), f32bits(eps), 0, 0, 0}
		if err := b.dispatch(op, kern, u, append(ins, out), grid1D(rows, 1)); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(s, out), nil
}

// NormalizeHeads L2-normalizes each head's d-vector of x [B, L, C] and multiplies head h by scale[h] when
// scale [heads] is not nil.
func (b *Backend) NormalizeHeads(x *core.Tensor, heads int, scale *core.Tensor) (*core.Tensor, error) {
	const op = "normalize"
	b.mu.Lock()
	defer b.mu.Unlock()
	xb, err := b.operand(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 3 {
		return nil, linalgShapeError(op, "want x [B, L, C], got %v", xs)
	}
	C := xs[2]
	if heads <= 0 || C%heads != 0 {
		return nil, linalgShapeError(op, "%d heads do not divide the %d channels of x %v", heads, C, xs)
	}
	bufs := []*gpuBuf{xb}
	if scale != nil {
		sb, err := b.operand(op, "scale", scale)
		if err != nil {
			return nil, err
		}
		if !scale.Shape().Equal(core.Shape{heads}) {
			return nil, linalgShapeError(op, "scale %v, want [%d]", scale.Shape(), heads)
		}
		bufs = append(bufs, sb)
	}
	d := C / heads
	chunks := xs[0] * xs[1] * heads
	out, err := b.alloc(uint64(max(chunks*d, 1))*4, op)
	if err != nil {
		return nil, err
	}
	if chunks > 0 && d > 0 {
		kern := kernel{file: "normalize.wgsl", params: normalizeKernel{WG: normalizeWG, Scale: scale != nil},
			inputs: len(bufs), outputs: 1}
		u := []uint32{uint32(chunks), uint32(d), uint32(heads), 0}
		if err := b.dispatch(op, kern, u, append(bufs, out), grid1D(chunks, 1)); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(xs, out), nil
}
