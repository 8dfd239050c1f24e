package vqvae

import (
	"fmt"
	"math"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/convnet"
)

// PhiLayout says how the checkpoint stores the quantizer's residual convs Phi (quant_resi).
type PhiLayout int

const (
	PhiIdentity        PhiLayout = iota // quant_resi = 0: no conv, Phi(h) = h
	PhiShared                           // share_quant_resi = 1: quantize.quant_resi.qresi
	PhiPartiallyShared                  // share_quant_resi > 1: quantize.quant_resi.qresi_ls.N
	PhiNonShared                        // share_quant_resi = 0: quantize.quant_resi.N
)

func (l PhiLayout) String() string {
	return [...]string{"identity", "shared", "partially-shared", "non-shared"}[l]
}

// phiTicks are the positions in [0, 1] of K Phis, as numpy.linspace computes them in float64 (VAR's
// quant.py): linspace(1/(3K), 1-1/(3K), K) when K == 4, otherwise linspace(1/(2K), 1-1/(2K), K).
// numpy computes element i as i*step + start and sets the last element to stop exactly; tie resolution
// in PhiIndex depends on those roundings, so the same expression order is kept here.
func phiTicks(k int) []float64 {
	var start, stop float64
	if k == 4 {
		start, stop = 1.0/3/float64(k), 1-1.0/3/float64(k)
	} else {
		start, stop = 1.0/2/float64(k), 1-1.0/2/float64(k)
	}
	t := make([]float64, k)
	if k == 1 {
		t[0] = start
		return t
	}
	step := (stop - start) / float64(k-1)
	for i := range t {
		t[i] = float64(i)*step + start
	}
	t[k-1] = stop
	return t
}

// PhiIndex is the Phi used at scale si of sn scales when there are k Phis: argmin_i |ticks[i] - si/(sn-1)|
// in float64, first minimum wins. With k = 4 and 10 scales it gives [0,0,1,1,1,2,2,3,3,3].
func PhiIndex(si, sn, k int) int {
	if k <= 1 {
		return 0
	}
	at := 0.0
	if sn > 1 {
		at = float64(si) / float64(sn-1)
	}
	best, bestD := 0, math.Inf(1)
	for i, t := range phiTicks(k) {
		if d := math.Abs(t - at); d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

// quantizer is VAR's multi-scale residual quantizer: a codebook [V, Cvae] and the Phi convs.
type quantizer struct {
	embedding *core.Tensor // [V, Cvae]
	v, cvae   int
	layout    PhiLayout
	phis      []convnet.Conv
	ratio     float32 // resi_ratio = |quant_resi|: Phi(h) = (1-r)*h + r*conv(h)
	patchNums []int
}

func loadQuantizer(bd *convnet.Builder, patchNums []int, ratio float32) *quantizer {
	q := &quantizer{ratio: ratio, patchNums: patchNums}
	es := bd.W.Shape("quantize.embedding.weight")
	if es == nil {
		bd.Fail(&core.WeightError{Tensor: "quantize.embedding.weight", Msg: "missing from checkpoint (is this a VAR VQVAE checkpoint?)"})
		return q
	}
	if len(es) != 2 {
		bd.Fail(&core.WeightError{Tensor: "quantize.embedding.weight", Msg: fmt.Sprintf("shape %v, want [V, Cvae]", es)})
		return q
	}
	q.v, q.cvae = es[0], es[1]
	q.embedding = bd.Tensor("quantize.embedding.weight", es...)
	phi := func(name string) { q.phis = append(q.phis, bd.Conv(name, q.cvae, 3, 1, convnet.Pad1)) }
	switch {
	case bd.W.Has("quantize.quant_resi.qresi.weight"):
		q.layout = PhiShared
		phi("quantize.quant_resi.qresi")
	case bd.W.Has("quantize.quant_resi.qresi_ls.0.weight"):
		q.layout = PhiPartiallyShared
		for i := 0; bd.W.Has(fmt.Sprintf("quantize.quant_resi.qresi_ls.%d.weight", i)); i++ {
			phi(fmt.Sprintf("quantize.quant_resi.qresi_ls.%d", i))
		}
	case bd.W.Has("quantize.quant_resi.0.weight"):
		q.layout = PhiNonShared
		for i := 0; bd.W.Has(fmt.Sprintf("quantize.quant_resi.%d.weight", i)); i++ {
			phi(fmt.Sprintf("quantize.quant_resi.%d", i))
		}
	default:
		q.layout = PhiIdentity
	}
	for _, p := range q.phis {
		if bd.Err == nil && p.Cout != q.cvae {
			bd.Fail(&core.WeightError{Tensor: "quantize.quant_resi", Msg: fmt.Sprintf("Phi has %d output channels, want %d", p.Cout, q.cvae)})
		}
	}
	return q
}

// phiFor returns the Phi of scale si, or nil for the identity.
func (q *quantizer) phiFor(si int) *convnet.Conv {
	if len(q.phis) == 0 {
		return nil
	}
	return &q.phis[PhiIndex(si, len(q.patchNums), len(q.phis))]
}

// applyPhi: (1-r)*h + r*conv(h).
func (q *quantizer) applyPhi(o *core.Ops, si int, h *core.Tensor) *core.Tensor {
	p := q.phiFor(si)
	if p == nil {
		// A copy, so that callers may free h whatever the layout.
		return o.Axpby(1, h, 0, h)
	}
	c := p.Apply(o, h)
	out := o.Axpby(1-q.ratio, h, q.ratio, c)
	o.Free(c)
	return out
}
