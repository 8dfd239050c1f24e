package cpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// Embedding gathers rows of table [V, C]: out [len(ids), C], out[i] = table[ids[i]]. An id outside [0, V)
// is an error naming the id and its position.
func (be *Backend) Embedding(table *core.Tensor, ids []int) (*core.Tensor, error) {
	const op = "embedding"
	table_VC, err := floats(op, "table", table)
	if err != nil {
		return nil, err
	}
	ts := table.Shape()
	if len(ts) != 2 {
		return nil, shapeError(op, "want table [V, C], got %v", ts)
	}
	V, C := ts[0], ts[1]
	for i, id := range ids {
		if id < 0 || id >= V {
			return nil, fmt.Errorf("%s: id %d (position %d) is outside the table's %d rows", op, id, i, V)
		}
	}
	out, out_NC := newTensor(len(ids), C)
	for i, id := range ids {
		copy(out_NC[i*C:(i+1)*C], table_VC[id*C:(id+1)*C])
	}
	return out, nil
}

// NearestCode returns, for each row z of z [N, C], the index of the codebook [V, C] row e nearest to it:
//
//	argmin over v of d(v) = (|z|^2 + |e_v|^2) - 2*(z . e_v)
//
// evaluated in float32 in exactly that order, as VAR's quantizer does (sum of squares plus addmm with
// alpha = -2), with the first index winning ties. Computing the distance this way rather than as |z - e|^2
// matters: the two round differently, and the argmin must agree with PyTorch on near ties.
func (be *Backend) NearestCode(z, codebook *core.Tensor) ([]int, error) {
	const op = "nearest-code"
	z_NC, err := floats(op, "z", z)
	if err != nil {
		return nil, err
	}
	e_VC, err := floats(op, "codebook", codebook)
	if err != nil {
		return nil, err
	}
	zs, es := z.Shape(), codebook.Shape()
	if len(zs) != 2 || len(es) != 2 || zs[1] != es[1] || es[0] == 0 || es[1] == 0 {
		return nil, shapeError(op, "want z [N, C] and a non-empty codebook [V, C], got z %v and codebook %v", zs, es)
	}
	N, V, C := zs[0], es[0], zs[1]
	row := func(t []float32, i int) []float32 { return t[i*C : (i+1)*C] }

	eSq := make([]float32, V) // |e_v|^2, shared by every row of z
	for v := range V {
		e := row(e_VC, v)
		eSq[v] = dot(e, e)
	}
	ids := make([]int, N)
	be.parallelFor(N, func(n0, n1 int) {
		for n := n0; n < n1; n++ {
			zn := row(z_NC, n)
			zSq := dot(zn, zn)
			best, bestD := 0, float32(0)
			for v := range V {
				d := (zSq + eSq[v]) - 2*dot(zn, row(e_VC, v))
				if v == 0 || d < bestD { // strict <: the first index wins ties
					best, bestD = v, d
				}
			}
			ids[n] = best
		}
	})
	return ids, nil
}
