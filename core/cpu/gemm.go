package cpu

import (
	"sync"

	"github.com/webvar/webvar/core"
)

// The packed matrix product: the fast path of the CPU backend's matrix products (Linear, Conv2d,
// Attention) where a SIMD micro-kernel exists (gemm_amd64.go), built the way optimised BLAS libraries are.
// Its results equal the reference code's up to float32 rounding, not bit for bit: each output is still one
// float32 sum over k, but formed with fused multiply-adds and, for K > gemmKC, as partial sums of
// gemmKC-long blocks added in increasing k. (PyTorch's own CPU matmul reorders its sums the same way, so
// neither order is "the" official one; the golden tests hold for both.)
//
// The product is c[i*ldc + j] = sum over k of A[i, k] * B[j, k] for i < n, j < m, k < K. Blocking,
// innermost first:
//   - micro-tile: gemmMR rows of A x gemmNR rows of B, gemmMR*gemmNR accumulators held in SIMD registers
//     for a whole block of kc <= gemmKC values of k (kernel6x16);
//   - packed panels: the kc-long slices of gemmMR rows of A, interleaved as [k][gemmMR] ("A panel"), and of
//     gemmNR rows of B as [k][gemmNR] ("B panel"), so the kernel reads both with unit stride; rows past the
//     end of A or B are zero in the panels and their outputs are discarded;
//   - A is packed once per product, before the tasks start, and shared by them;
//   - tasks: ranges of up to gemmNC rows of B (output columns), at least one per thread where there are
//     enough columns. Per k block a task packs its B rows (at most 512 KiB, kept in L2) and streams A past
//     them, gemmMC rows at a time, each B panel (16 KiB) staying in L1 while that block's A panels pass.
//     Every element of A and of B is packed once per product, a few percent of the multiply-adds.
//
// B comes through a bPacker, which writes B panels straight from where B lives: rows of a matrix, a
// quantized weight dequantized on the fly, columns of a matrix (attention's P @ V), or the patches of a
// convolution (implicit im2col: the patch matrix is never built).
const (
	gemmMR = 6   // rows of A per micro-tile
	gemmNR = 16  // rows of B per micro-tile (two 8-float vectors)
	gemmKC = 256 // k values per packed block
	gemmMC = 96  // rows of A per pass over a B panel, a multiple of gemmMR
	gemmNC = 512 // rows of B per task at most, a multiple of gemmNR
)

// microKernel computes the gemmMR x gemmNR product of an A panel and a B panel over kc values of k:
// t[r][j] = sum over k of aPanel[k*gemmMR + r] * bPanel[k*gemmNR + j], and writes it to c[r*ldc + j]
// (acc false) or adds it there (acc true).
type microKernel func(kc int, aPanel, bPanel, c []float32, ldc int, acc bool)

// A wide kernel (Backend.wide, where the CPU has wider vectors: AVX-512) is a microKernel for gemmMR x
// 2*gemmNR tiles: bPanel is then two B panels one after the other (kernel6x32Go). It keeps the panel
// layouts, so every bPacker serves both; gemmPacked uses it where two full panels sit side by side.

// bPacker is the B operand of a packed product.
type bPacker interface {
	// packPanel writes B[j0+r, k0+k] to panel[k*gemmNR + r] for r < rows <= gemmNR and k < k1-k0, and
	// zero for rows r >= rows.
	packPanel(panel []float32, j0, rows, k0, k1 int)
}

// blockPacker is a bPacker that can also pack all the panels of columns [j0, j1) at once, faster than
// panel by panel: panel (jp-j0)/gemmNR at bPack[(jp-j0)*(k1-k0):], each as packPanel writes it.
type blockPacker interface {
	packBlock(bPack []float32, j0, j1, k0, k1 int)
}

// bRows is B stored as rows: B[j, k] = f[j*ld + k] (Linear's weight, attention's keys).
type bRows struct {
	f  []float32
	ld int
}

func (b bRows) packPanel(panel []float32, j0, rows, k0, k1 int) {
	done := 0 // k values written by the SIMD packer
	if rows == gemmNR && fastPack16 != nil {
		done = fastPack16(panel, b.f, b.ld, j0, k0, k1)
		if done == k1-k0 {
			return
		}
	}
	interleave(panel[done*gemmNR:], gemmNR, rows, k1-k0-done, func(r int) []float32 {
		return b.f[(j0+r)*b.ld+k0+done : (j0+r)*b.ld+k1]
	})
}

// bQuantRows is a quantized weight as B: rows dequantized a segment at a time (never materialised).
type bQuantRows struct{ q core.QuantHost }

func (b bQuantRows) packPanel(panel []float32, j0, rows, k0, k1 int) {
	kc := k1 - k0
	if rows < gemmNR {
		clear(panel[:kc*gemmNR])
	}
	done := 0 // k values written by the SIMD packer
	if rows == gemmNR && fastDequantPanel != nil {
		done = fastDequantPanel(b.q, j0, k0, k1, panel)
	}
	if done == kc {
		return
	}
	for r := range rows { // dequantized straight into the panel's column r
		b.q.DequantizeStrided(j0+r, k0+done, k1, panel[done*gemmNR+r:], gemmNR)
	}
}

// bCols is B stored as columns: B[j, k] = f[k*ld + j] (attention's values in P @ V). A panel's row k is
// then a contiguous run of f.
type bCols struct {
	f  []float32
	ld int
}

func (b bCols) packPanel(panel []float32, j0, rows, k0, k1 int) {
	for k := range k1 - k0 {
		d := panel[k*gemmNR : (k+1)*gemmNR]
		copy(d, b.f[(k0+k)*b.ld+j0:(k0+k)*b.ld+j0+rows])
		clear(d[rows:])
	}
}

// interleave writes `rows` rows of kc values (row(r) returns row r) into panel as [kc][width], zero rows
// past `rows`. It reads the rows side by side and writes the panel in order (writing one row at a time
// would touch a new cache line of the panel on every k). The slices row returns must not overlap.
func interleave(panel []float32, width, rows, kc int, row func(r int) []float32) {
	var src [gemmNR][]float32 // width <= gemmNR
	for r := range rows {
		src[r] = row(r)[:kc]
	}
	if rows < width {
		clear(panel[:kc*width])
	}
	live := src[:rows]
	for k := range kc {
		d := panel[k*width : k*width+rows]
		for r, s := range live {
			d[r] = s[k]
		}
	}
}

// gemmPacked is the packed product c[i*ldc + j] = sum over k of a[i*lda + k] * B[j, k] for i < n, j < m,
// k < K, through kernel. With parallel false it runs on the calling goroutine only (for callers that
// parallelise over many small products themselves). post, when not nil, is called with each task's
// columns [j0, j1) once their sums are complete, while they are still in cache (Conv2d's bias and
// residual); the tasks' ranges cover [0, m) without overlap.
func (be *Backend) gemmPacked(kernel microKernel, parallel bool, a []float32, lda, n int, b bPacker, m, K int, c []float32, ldc int, post func(j0, j1 int)) {
	run, threads := be.parallelFor, be.threads
	if !parallel {
		run, threads = func(n int, fn func(lo, hi int)) { fn(0, n) }, 1
	}
	// A, packed once: k block kb (k0 = kb*gemmKC, kc values) holds the panels of every gemmMR rows, panel p
	// at aPack[k0*nPad + p*gemmMR*kc:].
	nPad := (n + gemmMR - 1) / gemmMR * gemmMR
	aBuf := aScratch.get(nPad * K)
	defer aScratch.put(aBuf)
	aPack := *aBuf
	kBlocks, panels := (K+gemmKC-1)/gemmKC, nPad/gemmMR
	run(kBlocks*panels, func(t0, t1 int) {
		for t := t0; t < t1; t++ {
			k0, i0 := t/panels*gemmKC, t%panels*gemmMR
			k1 := min(k0+gemmKC, K)
			kc := k1 - k0
			interleave(aPack[k0*nPad+i0*kc:], gemmMR, min(gemmMR, n-i0), kc, func(r int) []float32 {
				return a[(i0+r)*lda+k0 : (i0+r)*lda+k1]
			})
		}
	})

	// Columns per task: gemmNC, or fewer so that every thread gets work (whole micro-tiles).
	nc := min(gemmNC, (m+threads*gemmNR-1)/(threads*gemmNR)*gemmNR)
	pre, _ := b.(*prepacked)
	run((m+nc-1)/nc, func(t0, t1 int) {
		var bPack []float32
		if pre == nil {
			bBuf := bScratch.get(nc * min(K, gemmKC))
			defer bScratch.put(bBuf)
			bPack = *bBuf
		}
		var edge [gemmMR * 2 * gemmNR]float32
		wide := be.wide
		for t := t0; t < t1; t++ {
			j0 := t * nc
			j1 := min(j0+nc, m)
			for k0 := 0; k0 < K; k0 += gemmKC {
				k1 := min(k0+gemmKC, K)
				kc := k1 - k0
				if pre != nil {
					bPack = pre.block(j0, j1, k0, k1)
				} else if bb, ok := b.(blockPacker); ok {
					bb.packBlock(bPack, j0, j1, k0, k1)
				} else {
					for jp := j0; jp < j1; jp += gemmNR {
						b.packPanel(bPack[(jp-j0)*kc:(jp-j0+gemmNR)*kc], jp, min(gemmNR, j1-jp), k0, k1)
					}
				}
				aBlock := aPack[k0*nPad : k0*nPad+nPad*kc]
				for i0 := 0; i0 < n; i0 += gemmMC {
					i1 := min(i0+gemmMC, n)
					for jp := j0; jp < j1; jp += gemmNR {
						// With a wide kernel, two full B panels side by side (adjacent in bPack) are one
						// 6x32 tile; tiles with fewer rows fall back to the 6x16 tiles of each panel.
						pair := wide != nil && j1-jp >= 2*gemmNR
						for ip := i0; ip < i1; ip += gemmMR {
							aPanel := aBlock[ip*kc : (ip+gemmMR)*kc]
							rows := min(gemmMR, n-ip)
							if pair {
								tile(wide, 2*gemmNR, kc, aPanel, bPack[(jp-j0)*kc:(jp-j0+2*gemmNR)*kc], c, ldc, ip, jp, rows, 2*gemmNR, k0 > 0, &edge)
							} else {
								tile(kernel, gemmNR, kc, aPanel, bPack[(jp-j0)*kc:(jp-j0+gemmNR)*kc], c, ldc, ip, jp, rows, min(gemmNR, j1-jp), k0 > 0, &edge)
							}
						}
						if pair {
							jp += gemmNR
						}
					}
				}
			}
			if post != nil {
				post(j0, j1)
			}
		}
	})
}

// scratch is a pool of gemmPacked's packing buffers, reused from product to product: every value of a
// packed panel is written before it is read, so a reused buffer needs no clearing, where a new one was
// zeroed by make (the A panels of a 640-channel conv's weights are 15 MB; a VAE decode packed ~250 MB
// of them) and added to the garbage collector's work. A is in aScratch, B in bScratch, so that the two
// kinds of sizes do not take each other's buffers.
type scratch struct{ p sync.Pool }

var aScratch, bScratch scratch

// get returns a buffer of n floats (contents undefined).
func (s *scratch) get(n int) *[]float32 {
	b, _ := s.p.Get().(*[]float32)
	if b == nil || cap(*b) < n {
		nb := make([]float32, n)
		return &nb
	}
	*b = (*b)[:n]
	return b
}

func (s *scratch) put(b *[]float32) { s.p.Put(b) }

// tile runs kernel (width gemmNR, or 2*gemmNR for a wide kernel) on the micro-tile of rows ip.. and
// columns jp.. of c, of which rows x cols lie inside the product: straight into c when the tile is
// whole, otherwise through edge, keeping the part inside.
func tile(kernel microKernel, width, kc int, aPanel, bPanel, c []float32, ldc, ip, jp, rows, cols int, acc bool, edge *[gemmMR * 2 * gemmNR]float32) {
	if rows == gemmMR && cols == width {
		kernel(kc, aPanel, bPanel, c[ip*ldc+jp:], ldc, acc)
		return
	}
	kernel(kc, aPanel, bPanel, edge[:], width, false)
	for r := range rows {
		cr, er := c[(ip+r)*ldc+jp:(ip+r)*ldc+jp+cols], edge[r*width:r*width+cols]
		if !acc {
			copy(cr, er)
		} else {
			for j := range cr {
				cr[j] += er[j]
			}
		}
	}
}

// kernel6x32Go is the wide micro-kernel in plain Go, the specification of the AVX-512 one: the gemmMR x
// 2*gemmNR tile of an A panel and two B panels stored one after the other (bPanels[:kc*gemmNR] for
// columns 0..15, bPanels[kc*gemmNR:] for 16..31), that is kernel6x16Go on each panel. Every output is the
// same sum as in the 6x16 kernel, so a wide kernel changes no result.
func kernel6x32Go(kc int, aPanel, bPanels, c []float32, ldc int, acc bool) {
	kernel6x16Go(kc, aPanel, bPanels[:kc*gemmNR], c, ldc, acc)
	kernel6x16Go(kc, aPanel, bPanels[kc*gemmNR:2*kc*gemmNR], c[gemmNR:], ldc, acc)
}

// kernel6x16Go is the micro-kernel in plain Go: the specification of the assembly kernels, and the kernel
// of the packed path's tests on every platform. Each output is one float32 sum over k in increasing order
// (the assembly kernels fuse each multiply-add, so they round less often and may differ in the last bits).
func kernel6x16Go(kc int, aPanel, bPanel, c []float32, ldc int, acc bool) {
	var t [gemmMR][gemmNR]float32
	aPanel, bPanel = aPanel[:kc*gemmMR], bPanel[:kc*gemmNR]
	for k := range kc {
		av, bv := aPanel[k*gemmMR:(k+1)*gemmMR], bPanel[k*gemmNR:(k+1)*gemmNR]
		for r, x := range av {
			for j, y := range bv {
				t[r][j] += float32(x * y)
			}
		}
	}
	for r := range gemmMR {
		cr := c[r*ldc : r*ldc+gemmNR]
		for j := range cr {
			if acc {
				cr[j] += t[r][j]
			} else {
				cr[j] = t[r][j]
			}
		}
	}
}
