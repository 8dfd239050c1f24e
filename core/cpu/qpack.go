package cpu

import (
	"github.com/webvar/webvar/core"
)

// Quantized weights prepacked in panel order. A weight used with few rows is packed once (prepack.go);
// for an int8 or int4 weight the packed form keeps its codes instead of float32s: the codes of each
// gemmNR-column panel laid out by k ([kc][16] codes per k block), the panel's scales beside them, so
// that a product turns them into a float panel with a few vector instructions per k (unpackPanel), with
// no gathers, at the weight's own size (an eighth of a float32 copy for int4: MAR-B's diffusion MLP is
// 18 MB there against 126 MB, and stays in the last-level cache). Each value is float32(code) * scale,
// rounded to float32, exactly as core.QuantHost dequantizes it, so the products are bit-identical to
// those of the float prepack and of bQuantRows.
//
// Layout, per k block kb (k0 = kb*gemmKC, kc values, k0 a multiple of core.QuantBlock) and panel p
// (columns 16p..16p+15, zero codes and scales past m):
//   - codes at codes[k0*mPad*bytesPerCode + p*16*kc*bytesPerCode:], per k 16 codes: int8 one byte each
//     (column c at byte c); int4 8 bytes, byte c holding column c in its low nibble and column c+8 in
//     its high nibble;
//   - scales at scales[(k0/32)*mPad + p*16*nsub:] (nsub = ceil(kc/32) sub-blocks), per sub-block the 16
//     columns' scales.
type qpacked struct {
	scheme core.QuantScheme
	codes  []byte
	scales []float32
	mPad   int
}

// codeBytes is the bytes per 16 codes of a panel row.
func codeBytes(scheme core.QuantScheme) int {
	if scheme == core.QuantInt4 {
		return 8
	}
	return 16
}

// qpackedSizes are the lengths of the codes and scales of a qpacked [m, K] weight.
func qpackedSizes(scheme core.QuantScheme, m, K int) (codes, scales int) {
	mPad := (m + gemmNR - 1) / gemmNR * gemmNR
	return mPad * K * codeBytes(scheme) / gemmNR, core.QuantBlocks(K) * mPad
}

// qpackedBytes is the memory of a qpacked [m, K] weight.
func qpackedBytes(scheme core.QuantScheme, m, K int) int64 {
	codes, scales := qpackedSizes(scheme, m, K)
	return int64(codes) + 4*int64(scales)
}

func (p *qpacked) bytes() int64 { return int64(len(p.codes)) + 4*int64(len(p.scales)) }

func newQPacked(q core.QuantHost) *qpacked {
	m, K := q.Shape[0], q.Shape[1]
	nc, ns := qpackedSizes(q.Scheme, m, K)
	p := &qpacked{scheme: q.Scheme, codes: make([]byte, nc), scales: make([]float32, ns), mPad: (m + gemmNR - 1) / gemmNR * gemmNR}
	for j := range m {
		pn, c := j/gemmNR, j%gemmNR
		for k0 := 0; k0 < K; k0 += gemmKC {
			kc := min(gemmKC, K-k0)
			codes, scales := p.panelAt(pn, k0, kc)
			for s := range len(scales) / gemmNR {
				scales[s*gemmNR+c] = q.Scales[j*core.QuantBlocks(K)+k0/core.QuantBlock+s]
			}
			for k := range kc {
				code := q.Code(j, k0+k)
				if p.scheme == core.QuantInt4 {
					b := &codes[k*8+c%8]
					if c < 8 {
						*b |= byte(code) & 0xf
					} else {
						*b |= byte(code) << 4
					}
				} else {
					codes[k*16+c] = byte(int8(code))
				}
			}
		}
	}
	return p
}

// panelAt returns panel p's codes and scales in k block [k0, k0+kc).
func (p *qpacked) panelAt(pn, k0, kc int) ([]byte, []float32) {
	cb := codeBytes(p.scheme)
	nsub := (kc + core.QuantBlock - 1) / core.QuantBlock
	codes := p.codes[(k0*p.mPad+pn*gemmNR*kc)*cb/gemmNR:][:kc*cb]
	scales := p.scales[(k0/core.QuantBlock)*p.mPad+pn*gemmNR*nsub:][:nsub*gemmNR]
	return codes, scales
}

func (p *qpacked) packPanel(panel []float32, j0, rows, k0, k1 int) {
	codes, scales := p.panelAt(j0/gemmNR, k0, k1-k0)
	unpackPanel(p.scheme, k1-k0, codes, scales, panel)
	for k := range k1 - k0 { // columns past the weight's (rows < gemmNR) are zero already: zero scales
		clear(panel[k*gemmNR+rows : (k+1)*gemmNR])
	}
}

func (p *qpacked) packBlock(bPack []float32, j0, j1, k0, k1 int) {
	kc := k1 - k0
	for jp := j0; jp < j1; jp += gemmNR {
		codes, scales := p.panelAt(jp/gemmNR, k0, kc)
		unpackPanel(p.scheme, kc, codes, scales, bPack[(jp-j0)*kc:(jp-j0+gemmNR)*kc])
	}
}

// unpackPanel writes the [kc][16] float panel of a qpacked panel's codes and scales.
func unpackPanel(scheme core.QuantScheme, kc int, codes []byte, scales, panel []float32) {
	done := 0
	if fastUnpack != nil {
		done = fastUnpack(scheme, kc, codes, scales, panel)
	}
	unpackPanelGo(scheme, done, kc, codes, scales, panel)
}

// unpackPanelGo is unpackPanel in plain Go for k values [k0, kc): the specification of the assembly.
func unpackPanelGo(scheme core.QuantScheme, k0, kc int, codes []byte, scales, panel []float32) {
	for k := k0; k < kc; k++ {
		sc := scales[k/core.QuantBlock*gemmNR : (k/core.QuantBlock+1)*gemmNR]
		out := panel[k*gemmNR : (k+1)*gemmNR]
		if scheme == core.QuantInt4 {
			for c, b := range codes[k*8 : k*8+8] {
				out[c] = float32(int8(b<<4)>>4) * sc[c]
				out[c+8] = float32(int8(b)>>4) * sc[c+8]
			}
			continue
		}
		for c, b := range codes[k*16 : k*16+16] {
			out[c] = float32(int8(b)) * sc[c]
		}
	}
}
