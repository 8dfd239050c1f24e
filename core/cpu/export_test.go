package cpu

// TableBackend is one configuration of this backend for the cross-backend op table.
type TableBackend struct {
	Name    string
	Backend *Backend
}

// TableBackends are the fast-path configurations that TestCrossBackendFastPaths (package cpu_test: the
// table in core/backendtest imports this package, so its test cannot live inside it) compares with the
// table's reference, NewReference, which runs the plain-Go spec code whatever the platform and build tags
// (kernel, wide and fastMath unset, no offload). Each configuration is one that New takes on some
// machine, or a part of one that this machine's New would hide:
//   - "new": New itself, this machine's fast paths (AVX2+FMA packed products and, where the CPU has
//     AVX512F, the 6x32 kernel; float32 GELU, SiLU and GroupNorm with the AVX2 SiLU loop);
//   - "new-1-thread": the same on one goroutine (other task splits in parallelFor and gemmPacked);
//   - "fastmath-gemmtile": New where there is no assembly (wasm, other architectures, the purego tag):
//     the reference products with the float32 elementwise functions;
//   - "packed-go", "packed-go-wide": the packed path (its panel packers, im2col, quantized rows,
//     attention's blocks, the pairing of panels for a wide kernel) with the plain-Go micro-kernels, so
//     that the table checks it on every platform, purego included;
//   - "packed-simd-narrow": the AVX2 kernel alone, what New runs on an AVX2 CPU without AVX-512, where
//     this one has both;
//   - "gemv-go": Linear of 1 and 2 rows through the plain-Go matrix-vector path (gemv.go), the spec of the
//     AVX2 kernels New runs (no platform's New runs it);
//   - "new+offload": New with Linear's and Conv2d's sums on an offload (offload_test.go's convOffload),
//     the CPU's side of wasm/webgl: the bias, residual and dequantization around the offloaded sums.
//
// Threads are 3, as in testBackend, so that the splits are uneven on any machine.
func TableBackends() []TableBackend {
	bs := []TableBackend{
		{"new", New(3)},
		{"new-1-thread", New(1)},
		{"packed-go", &Backend{threads: 3, kernel: kernel6x16Go, fastMath: true}},
		{"packed-go-wide", &Backend{threads: 3, kernel: kernel6x16Go, wide: kernel6x32Go, fastMath: true}},
		{"gemv-go", &Backend{threads: 3, fastMath: true, gemvPath: gemvGo}},
		{"new+offload", New(3).WithOffload(&convOffload{})},
	}
	if fastKernel != nil { // otherwise "new" is this configuration
		bs = append(bs, TableBackend{"fastmath-gemmtile", &Backend{threads: 3, fastMath: true}})
	}
	if fastWideKernel != nil {
		bs = append(bs, TableBackend{"packed-simd-narrow", &Backend{threads: 3, kernel: fastKernel, fastMath: true}})
	}
	return bs
}
