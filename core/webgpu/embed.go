package webgpu

import (
	"fmt"
	"math"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/webvar/webvar/core"
)

// Codebook ops: Embedding (shaders/embed.wgsl) and NearestCode (shaders/nearest.wgsl).

const embedWG = 256

// nearestWG invocations share one row of z; each scans every nearestWG-th codebook row.
const nearestWG = 64

type embedKernel struct{ WG int }
type nearestKernel struct{ WG int }

// uploadU32 uploads words as a tensor of len(words) elements. Upload copies the float32 data's bytes
// verbatim, so the u32 bit patterns arrive intact for a kernel that reads the buffer as array<u32>.
func (b *Backend) uploadU32(words []uint32) (*core.Tensor, error) {
	f := make([]float32, len(words))
	for i, w := range words {
		f[i] = math.Float32frombits(w)
	}
	return b.Upload(core.HostTensor{Shape: core.Shape{len(f)}, Data: f})
}

// Embedding gathers rows of table [V, C]: out [len(ids), C]. The ids are range-checked here (an error
// names the first bad id and its position) and uploaded as u32.
func (b *Backend) Embedding(table *core.Tensor, ids []int) (*core.Tensor, error) {
	const op = "embedding"
	if table == nil {
		return nil, fmt.Errorf("%s: table is nil", op)
	}
	ts := table.Shape()
	if err := checkDims(op, "table", ts); err != nil {
		return nil, err
	}
	if len(ts) != 2 {
		return nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("want table [V, C], got %v", ts)}
	}
	V, C := ts[0], ts[1]
	words := make([]uint32, len(ids))
	for i, id := range ids {
		if id < 0 || id >= V {
			return nil, fmt.Errorf("%s: id %d (position %d) is outside the table's %d rows", op, id, i, V)
		}
		words[i] = uint32(id)
	}
	var idsT *core.Tensor
	n := len(ids) * C
	if n > 0 {
		var err error
		if idsT, err = b.uploadU32(words); err != nil {
			return nil, fmt.Errorf("%s: uploading ids: %w", op, err)
		}
		defer b.Free(idsT) // released once the pending work that reads it has been submitted
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	tg, err := b.operand(op, "table", table)
	if err != nil {
		return nil, err
	}
	out, err := b.outBuf(op, n)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		ig, err := b.storage(idsT, op)
		if err != nil {
			return nil, err
		}
		k := kernel{file: "embed.wgsl", params: embedKernel{WG: embedWG}, inputs: 2, outputs: 1}
		if err := b.dispatch(op, k, []uint32{uint32(n), uint32(C)}, []*gpuBuf{tg, ig, out}, grid1D(n, embedWG)); err != nil {
			return nil, err
		}
	}
	return core.NewTensor(core.Shape{len(ids), C}, out), nil
}

// NearestCode returns, for each row of z [N, C], the index of the nearest codebook [V, C] row by
// d = (|z|^2 + |e|^2) - 2 z.e in f32, first index on ties: one workgroup per row writes a u32 id, which
// is read back (flushing the pending work).
func (b *Backend) NearestCode(z, codebook *core.Tensor) ([]int, error) {
	ids, scratch, err := b.nearestLocked(z, codebook)
	b.Free(scratch) // after the lock is released: Free takes it
	return ids, err
}

func (b *Backend) nearestLocked(z, codebook *core.Tensor) ([]int, *core.Tensor, error) {
	const op = "nearest-code"
	b.mu.Lock()
	defer b.mu.Unlock()
	zg, err := b.operand(op, "z", z)
	if err != nil {
		return nil, nil, err
	}
	eg, err := b.operand(op, "codebook", codebook)
	if err != nil {
		return nil, nil, err
	}
	zs, es := z.Shape(), codebook.Shape()
	if len(zs) != 2 || len(es) != 2 || zs[1] != es[1] || es[0] == 0 || es[1] == 0 {
		return nil, nil, &core.ShapeError{Op: op, Msg: fmt.Sprintf("want z [N, C] and a non-empty codebook [V, C], got z %v and codebook %v", zs, es)}
	}
	N, V, C := zs[0], es[0], zs[1]
	if V >= 1<<31 {
		return nil, nil, fmt.Errorf("%s: codebook of %d rows: %w", op, V, core.ErrUnsupported)
	}
	if N == 0 {
		return []int{}, nil, nil
	}
	out, err := b.outBuf(op, N)
	if err != nil {
		return nil, nil, err
	}
	scratch := core.NewTensor(core.Shape{N}, out)
	k := kernel{file: "nearest.wgsl", params: nearestKernel{WG: nearestWG}, inputs: 2, outputs: 1}
	if err := b.dispatch(op, k, []uint32{uint32(N), uint32(V), uint32(C)}, []*gpuBuf{zg, eg, out}, grid1D(N, 1)); err != nil {
		return nil, scratch, err
	}
	ids := make([]int, N)
	err = b.readLocked(out.buf, out.bytes+out.guard, func(raw []byte) error {
		for i, w := range wgpu.FromBytes[uint32](raw[out.bytes:]) {
			if w != guardWord {
				return fmt.Errorf("the kernel wrote past the end of its output (guard word %d is %#x)", i, w)
			}
		}
		for i, w := range wgpu.FromBytes[uint32](raw)[:N] {
			if w >= uint32(V) {
				return fmt.Errorf("kernel returned id %d for row %d of a %d-row codebook", w, i, V)
			}
			ids[i] = int(w)
		}
		return nil
	})
	if err != nil {
		return nil, scratch, fmt.Errorf("%s: %w", op, err)
	}
	return ids, scratch, nil
}
