//go:build amd64 && !purego

package cpu

import (
	"golang.org/x/sys/cpu"

	"github.com/webvar/webvar/core"
)

// fastUnpack is unpackPanel's loop over whole 32-k sub-blocks where the CPU has AVX2, nil otherwise. It
// returns how many k values it wrote (the caller writes the rest).
var fastUnpack func(scheme core.QuantScheme, kc int, codes []byte, scales, panel []float32) int = func() func(core.QuantScheme, int, []byte, []float32, []float32) int {
	if cpu.X86.HasAVX2 {
		return unpackAVX2
	}
	return nil
}()

func unpackAVX2(scheme core.QuantScheme, kc int, codes []byte, scales, panel []float32) int {
	subs := kc / core.QuantBlock
	if subs == 0 {
		return 0
	}
	n := subs * core.QuantBlock
	// Bounds the assembly relies on.
	_, _ = scales[subs*gemmNR-1], panel[n*gemmNR-1]
	switch scheme {
	case core.QuantInt4:
		_ = codes[n*8-1]
		unpackInt4AVX2(subs, &codes[0], &scales[0], &panel[0])
	case core.QuantInt8:
		_ = codes[n*16-1]
		unpackInt8AVX2(subs, &codes[0], &scales[0], &panel[0])
	default:
		return 0
	}
	return n
}

// unpackInt4AVX2 unpacks subs 32-k sub-blocks of int4 codes (qpack_amd64.s).
//
//go:noescape
func unpackInt4AVX2(subs int, codes *byte, scales *float32, panel *float32)

// unpackInt8AVX2 unpacks subs 32-k sub-blocks of int8 codes (qpack_amd64.s).
//
//go:noescape
func unpackInt8AVX2(subs int, codes *byte, scales *float32, panel *float32)
