package cpu

import (
	"sync"

	"github.com/webvar/webvar/core"
)

// Prepacked Linear weights. The packed product (gemm.go) packs its B operand, the weight, into panels on
// every call: once per product, a few percent of the work when many rows of x pass each panel, but a
// large share when few do (MAR's diffusion MLP runs a few dozen rows through the same 1024 x 1024
// weights a hundred times per iteration; VAR's first scales have 2 to 32 rows). A weight used with few
// rows is therefore packed once and kept, up to a memory budget per backend; products with many rows
// pack as before, so a model larger than the budget still runs at full speed where it matters.
//
// A weight is packed on its second product with few rows, not its first, so that the budget goes to the
// weights used most often when a model's do not all fit: MAR's encoder sees few rows once per iteration
// and would otherwise fill the budget before the diffusion MLP, which runs a hundred times per iteration,
// is reached; its weights reach their second use first.
const (
	// prepackRows is the most rows of x for which Linear uses (and makes) a prepacked weight.
	prepackRows = 2 * gemmMC
	// DefaultPrepackBudget is the memory New's backend may spend on prepacked weights.
	DefaultPrepackBudget = 384 << 20
)

// prepacked is a weight [m, K] packed once into the B panels gemmPacked streams: for each k block (k0 =
// 0, gemmKC, ...; kc values), panel p (rows 16p..16p+15, zero past m) at data[k0*mPad + p*16*kc:], laid
// out [kc][16] as packPanel writes it. A task's panels for columns [j0, j1) are then one contiguous run.
type prepacked struct {
	data    []float32
	m, K    int
	mPad    int
	packing bPacker // what packed it (for packPanel, which gemmPacked does not call on a prepacked B)
}

// block is the run of panels for columns [j0, j1) (j0 a multiple of gemmNR) of k block [k0, k1).
func (p *prepacked) block(j0, j1, k0, k1 int) []float32 {
	kc := k1 - k0
	end := (j1 + gemmNR - 1) / gemmNR * gemmNR
	base := k0 * p.mPad
	return p.data[base+j0*kc : base+end*kc]
}

func (p *prepacked) packPanel(panel []float32, j0, rows, k0, k1 int) {
	p.packing.packPanel(panel, j0, rows, k0, k1)
}

func newPrepacked(b bPacker, m, K int) *prepacked {
	mPad := (m + gemmNR - 1) / gemmNR * gemmNR
	p := &prepacked{data: make([]float32, mPad*K), m: m, K: K, mPad: mPad, packing: b}
	for k0 := 0; k0 < K; k0 += gemmKC {
		k1 := min(k0+gemmKC, K)
		kc := k1 - k0
		for jp := 0; jp < m; jp += gemmNR {
			b.packPanel(p.data[k0*mPad+jp*kc:k0*mPad+(jp+gemmNR)*kc], jp, min(gemmNR, m-jp), k0, k1)
		}
	}
	return p
}

// packCache is a backend's prepacked weights, by weight tensor, within a byte budget.
type packCache struct {
	mu     sync.Mutex
	byW    map[*core.Tensor]packedWeight
	seen   map[*core.Tensor]bool // weights used once with few rows, not yet packed
	bytes  int64
	budget int64
}

// packedWeight is a weight packed once: a *prepacked (float32 panels) or a *qpacked (quantized codes in
// panel order, qpack.go).
type packedWeight interface {
	bPacker
	bytes() int64
}

func (p *prepacked) bytes() int64 { return int64(len(p.data)) * 4 }

// prepackedBytes is the memory of a prepacked [m, K] weight.
func prepackedBytes(m, K int) int64 { return int64((m+gemmNR-1)/gemmNR*gemmNR) * int64(K) * 4 }

// get returns w's packed form, packing it with pack when it is not cached, was asked for before and
// fits the budget (size: the bytes pack will hold); nil when it does not.
func (c *packCache) get(w *core.Tensor, size int64, pack func() packedWeight) bPacker {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.byW[w]; ok {
		return p
	}
	if c.bytes+size > c.budget {
		return nil
	}
	if !c.seen[w] {
		if c.seen == nil {
			c.seen = map[*core.Tensor]bool{}
		}
		c.seen[w] = true
		return nil
	}
	delete(c.seen, w)
	if c.byW == nil {
		c.byW = map[*core.Tensor]packedWeight{}
	}
	p := pack()
	c.byW[w] = p
	c.bytes += p.bytes()
	return p
}

// drop forgets w (Backend.Free).
func (c *packCache) drop(w *core.Tensor) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.seen, w)
	if p, ok := c.byW[w]; ok {
		c.bytes -= p.bytes()
		delete(c.byW, w)
	}
}

// PrepackedBytes is the memory the backend holds in prepacked weights.
func (be *Backend) PrepackedBytes() int64 {
	if be.packs == nil {
		return 0
	}
	be.packs.mu.Lock()
	defer be.packs.mu.Unlock()
	return be.packs.bytes
}
