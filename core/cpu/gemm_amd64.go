//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// fastKernel is the micro-kernel of gemmNT's packed path on this machine: the AVX2+FMA kernel where the
// CPU and OS support it, nil (the plain-Go gemmTile path) otherwise. Set once at start-up, never changed.
var fastKernel microKernel = func() microKernel {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return kernel6x16AVX2
	}
	return nil
}()

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
