package cpu

import (
	"math"
	"testing"

	"github.com/webvar/webvar/core"
)

// TestUnpackPanel: the SIMD unpacking of qpacked panels writes what the plain-Go specification writes, bit
// for bit, for block lengths around multiples of the 32-value scale blocks; nothing past the panel.
func TestUnpackPanel(t *testing.T) {
	if fastUnpack == nil {
		t.Skip("no SIMD unpacking on this platform")
	}
	r := newRand(17)
	for _, scheme := range []core.QuantScheme{core.QuantInt4, core.QuantInt8} {
		cb := 16
		if scheme == core.QuantInt4 {
			cb = 8
		}
		for _, kc := range []int{1, 31, 32, 33, 64, 100, 256} {
			codes := make([]byte, kc*cb)
			for i := range codes {
				codes[i] = byte(r.IntN(256))
			}
			scales := randn(r, (kc+31)/32*gemmNR)
			want := make([]float32, kc*gemmNR)
			unpackPanelGo(scheme, 0, kc, codes, scales, want)
			got := make([]float32, kc*gemmNR+8)
			for i := range got {
				got[i] = -7
			}
			unpackPanel(scheme, kc, codes, scales, got[:kc*gemmNR])
			for i, w := range want {
				if math.Float32bits(got[i]) != math.Float32bits(w) {
					t.Fatalf("%v kc %d: panel[%d] = %v, want %v", scheme, kc, i, got[i], w)
				}
			}
			for i := kc * gemmNR; i < len(got); i++ {
				if got[i] != -7 {
					t.Fatalf("%v kc %d: wrote panel[%d] past the panel", scheme, kc, i)
				}
			}
		}
	}
}

// TestQPackedPanels: every panel a qpacked weight unpacks equals the one bQuantRows dequantizes from the
// weight itself, bit for bit, for shapes with edge panels, several k blocks and a last block shorter
// than a scale block.
func TestQPackedPanels(t *testing.T) {
	r := newRand(19)
	for _, scheme := range []core.QuantScheme{core.QuantInt4, core.QuantInt8} {
		for _, s := range []struct{ M, K int }{{1, 1}, {16, 32}, {37, 70}, {45, 600}, {130, 257}} {
			q, err := core.Quantize(core.HostTensor{Shape: core.Shape{s.M, s.K}, Data: randn(r, s.M*s.K)}, scheme)
			if err != nil {
				t.Fatal(err)
			}
			qp := newQPacked(q)
			if got, want := qpackedBytes(scheme, s.M, s.K), qp.bytes(); got != want {
				t.Fatalf("qpackedBytes = %d, the packed weight holds %d", got, want)
			}
			for k0 := 0; k0 < s.K; k0 += gemmKC {
				k1 := min(k0+gemmKC, s.K)
				for j0 := 0; j0 < s.M; j0 += gemmNR {
					rows := min(gemmNR, s.M-j0)
					want := make([]float32, (k1-k0)*gemmNR)
					bQuantRows{q: q}.packPanel(want, j0, rows, k0, k1)
					got := make([]float32, len(want))
					qp.packPanel(got, j0, rows, k0, k1)
					block := make([]float32, len(want))
					qp.packBlock(block, j0, j0+rows, k0, k1)
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(block[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%v %+v panel %d k0 %d: [%d] = %v (block %v), want %v", scheme, s, j0/gemmNR, k0, i, got[i], block[i], want[i])
						}
					}
				}
			}
		}
	}
}
