//go:build amd64 && !purego

package cpu

import (
	"golang.org/x/sys/cpu"

	"github.com/webvar/webvar/core"
)

// fastKernel is the micro-kernel of gemmNT's packed path on this machine: the AVX2+FMA kernel where the
// CPU and OS support it, nil (the plain-Go gemmTile path) otherwise. Set once at start-up, never changed.
var fastKernel microKernel = func() microKernel {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return kernel6x16AVX2
	}
	return nil
}()

// fastWideKernel is the 6x32 kernel (two B panels per call) where the CPU and OS support AVX-512
// (AVX512F): twice the multiply-adds per instruction of the AVX2 kernel, with the same result bit for bit
// (each output is the same chain of fused multiply-adds). Nil otherwise.
var fastWideKernel microKernel = func() microKernel {
	if fastKernel != nil && cpu.X86.HasAVX512F {
		return kernel6x32AVX512
	}
	return nil
}()

// fastPack16 is bRows' panel packer for full 16-row panels where the CPU has AVX2 (8x8 transposes in
// registers instead of one value at a time), nil otherwise.
var fastPack16 func(panel, f []float32, ld, j0, k0, k1 int) int = func() func([]float32, []float32, int, int, int, int) int {
	if cpu.X86.HasAVX2 {
		return pack16
	}
	return nil
}()

// pack16 writes panel[k*gemmNR + r] = f[(j0+r)*ld + k0 + k] for r < 16 and the whole 8-value blocks of
// k < k1-k0, returning how many values of k it wrote (the caller writes the rest).
func pack16(panel, f []float32, ld, j0, k0, k1 int) int {
	blocks := (k1 - k0) / 8
	if blocks == 0 {
		return 0
	}
	// Bounds the assembly relies on: the last value of the last row it reads, and of the panel.
	_ = f[(j0+gemmNR-1)*ld+k0+8*blocks-1]
	_ = panel[8*blocks*gemmNR-1]
	pack16AVX2(blocks, &f[j0*ld+k0], ld, &panel[0])
	return 8 * blocks
}

// pack16AVX2 is pack16's loop (gemm_amd64.s).
//
//go:noescape
func pack16AVX2(blocks int, src *float32, ld int, dst *float32)

// fastDequantPanel is the panel packer of int8 and int4 weights (bQuantRows) where the CPU has AVX2, nil
// otherwise.
var fastDequantPanel func(q core.QuantHost, j0, k0, k1 int, panel []float32) int = func() func(core.QuantHost, int, int, int, []float32) int {
	if cpu.X86.HasAVX2 {
		return dequantPanel
	}
	return nil
}()

// dequantPanel writes the full 16-row panel of rows j0.. and k0..k1 of an int8 or int4 q (k0 a multiple
// of QuantBlock) as packPanel does, for the whole words of the range (4 int8 or 8 int4 codes each), and
// returns how many k values it wrote (the caller writes the rest). Other schemes: 0.
func dequantPanel(q core.QuantHost, j0, k0, k1 int, panel []float32) int {
	perWord := 0
	asm := dequantPanelInt8AVX2
	switch q.Scheme {
	case core.QuantInt8:
		perWord = 4
	case core.QuantInt4:
		perWord, asm = 8, dequantPanelInt4AVX2
	}
	if perWord == 0 || k0%core.QuantBlock != 0 {
		return 0
	}
	K := q.Shape[1]
	wpr, nb := q.Scheme.WordsPerRow(K), core.QuantBlocks(K)
	words := (k1 - k0) / perWord
	if words == 0 {
		return 0
	}
	// Bounds the assembly relies on: the last word and scale it gathers, and the panel.
	_ = q.Codes[(j0+gemmNR-1)*wpr+k0/perWord+words-1]
	_ = q.Scales[(j0+gemmNR-1)*nb+(k0+perWord*words-1)/core.QuantBlock]
	_ = panel[perWord*words*gemmNR-1]
	asm(words, &q.Codes[j0*wpr+k0/perWord], wpr, &q.Scales[j0*nb+k0/core.QuantBlock], nb, &panel[0])
	return perWord * words
}

// dequantPanelInt8AVX2 is dequantPanelInt8's loop (gemm_amd64.s).
//
//go:noescape
func dequantPanelInt8AVX2(words int, codes *uint32, wpr int, scales *float32, nb int, panel *float32)

// dequantPanelInt4AVX2 is dequantPanel's loop for int4 (gemm_amd64.s).
//
//go:noescape
func dequantPanelInt4AVX2(words int, codes *uint32, wpr int, scales *float32, nb int, panel *float32)

// sgemm6x16AVX2 is kernel6x16Go in AVX2 assembly (gemm_amd64.s): a and b point at the A and B panels,
// c at the tile's first output, ldc is c's row stride in elements, acc is 1 to add to c and 0 to store.
//
//go:noescape
func sgemm6x16AVX2(kc int, a, b, c *float32, ldc int, acc int)

// kernel6x16AVX2 checks the panel and output bounds the assembly relies on, then runs it.
func kernel6x16AVX2(kc int, aPanel, bPanel, c []float32, ldc int, acc bool) {
	_, _ = aPanel[kc*gemmMR-1], bPanel[kc*gemmNR-1]
	_ = c[(gemmMR-1)*ldc+gemmNR-1]
	add := 0
	if acc {
		add = 1
	}
	sgemm6x16AVX2(kc, &aPanel[0], &bPanel[0], &c[0], ldc, add)
}

// sgemm6x32AVX512 is kernel6x32Go in AVX-512 assembly (gemm_amd64.s), arguments as in sgemm6x16AVX2 with
// b pointing at the first of the two B panels (the second follows it, kc*gemmNR floats on).
//
//go:noescape
func sgemm6x32AVX512(kc int, a, b, c *float32, ldc int, acc int)

// kernel6x32AVX512 checks the panel and output bounds the assembly relies on, then runs it.
func kernel6x32AVX512(kc int, aPanel, bPanels, c []float32, ldc int, acc bool) {
	_, _ = aPanel[kc*gemmMR-1], bPanels[2*kc*gemmNR-1]
	_ = c[(gemmMR-1)*ldc+2*gemmNR-1]
	add := 0
	if acc {
		add = 1
	}
	sgemm6x32AVX512(kc, &aPanel[0], &bPanels[0], &c[0], ldc, add)
}
