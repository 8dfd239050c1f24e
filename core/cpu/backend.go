// Package cpu is the reference implementation of core.Backend in plain Go. Each op is written to be read as
// the specification of that op for the whole project: the WebGPU backend is tested against this one, and
// this one is tested against PyTorch (testdata/var-tiny/golden.safetensors).
//
// Fast paths: the matrix products (Linear, Conv2d, Attention) also have a packed, SIMD path (gemm.go, with
// an AVX2+FMA assembly micro-kernel on amd64, and a 6x32 AVX-512 one beside it where the CPU has
// AVX512F) that New uses where the CPU has it (not with the `purego`
// build tag, on other architectures or in wasm), and New's GELU, SiLU and GroupNorm evaluate in float32
// with a float32 exp (fastmath.go) instead of float64. NewReference runs the spec code only. The fast
// paths compute the same functions with other rounding; they are tested against the reference op by op,
// through the cross-backend table (core/backendtest, each configuration in export_test.go) and against
// the golden tensors end to end.
//
// Storage: a tensor's storage is a dense, row-major []float32 holding exactly Numel() elements. core.Reshape
// makes views that share that slice, so no op but WriteRows (which fills a cache in place) ever writes into an
// input's storage: every other op allocates a fresh output.
//
// Numerics: values are float32 like the PyTorch model. Sums that feed a normalisation (mean, variance, L2
// norm, softmax denominator) are accumulated in float64, which is at least as accurate as PyTorch's own
// float32 reductions; dot products (Linear, Conv2d, attention scores) are accumulated in float32, as PyTorch's
// CPU kernels do. An explicit float32(...) around a product marks where PyTorch rounds it before the next
// addition; the conversion also keeps the Go compiler from fusing that multiply-add into an FMA on
// platforms where it would.
//
// Errors: every op validates its arguments and returns a *core.ShapeError for shapes it does not accept (or
// a plain error for other bad arguments such as a tensor of another backend); no op panics on bad input.
package cpu

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/webvar/webvar/core"
)

// Backend is the CPU reference backend. Its only mutable state is New's cache of prepacked Linear weights
// (prepack.go), guarded by a mutex, so one Backend may be used by several goroutines at once.
type Backend struct {
	threads  int          // goroutines an op may use at most
	kernel   microKernel  // the matrix products' SIMD micro-kernel (gemm.go), or nil for the reference code
	wide     microKernel  // a 6x32 kernel for two B panels at once (gemm.go), or nil: kernel only
	fastMath bool         // float32 exp-based GELU, SiLU and GroupNorm (fastmath.go) instead of the float64 spec
	offload  Offload      // Linear's products on another device first (offload.go), or nil
	packs    *packCache   // prepacked weights of products with few rows (prepack.go), or nil
	gemvPath *gemvKernels // Linear's matrix-vector path for few rows of x (gemv.go), or nil: none
}

var _ core.Backend = (*Backend)(nil)

// New returns a CPU backend whose ops use up to threads goroutines; threads <= 0 means runtime.NumCPU().
// Its matrix products (Linear, Conv2d, Attention) use the SIMD micro-kernel of this CPU where there is one
// (AVX2+FMA on amd64, AVX-512 where present), Linear with 1 or 2 rows of x runs as matrix-vector products
// where there are AVX2 kernels for them (gemv.go), and GELU, SiLU and GroupNorm compute in float32
// (fastmath.go); all change float32 rounding, not what is computed. NewReference does none of it.
func New(threads int) *Backend {
	be := NewReference(threads)
	be.kernel, be.wide, be.fastMath, be.gemvPath = fastKernel, fastWideKernel, true, fastGemv
	if be.kernel != nil {
		be.packs = &packCache{budget: DefaultPrepackBudget}
	}
	return be
}

// NewReference is New with every op running the plain-Go reference code, the specification the other
// backends (and New's fast paths) are tested against.
func NewReference(threads int) *Backend {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	return &Backend{threads: threads}
}

// Name implements core.Backend: "cpu", or "cpu-ref" for NewReference's backend, with "+" and the
// offload device's name after it when there is one ("cpu+webgl2").
func (be *Backend) Name() string {
	name := "cpu"
	if !be.fastMath {
		name = "cpu-ref"
	}
	if be.offload != nil {
		name += "+" + be.offload.Name()
	}
	return name
}

// Upload copies h into a new tensor (the caller may reuse h.Data afterwards).
func (be *Backend) Upload(h core.HostTensor) (*core.Tensor, error) {
	if err := checkDims("upload", "host tensor", h.Shape); err != nil {
		return nil, err
	}
	if len(h.Data) != h.Shape.Numel() {
		return nil, shapeError("upload", "shape %v needs %d values, host tensor has %d", h.Shape, h.Shape.Numel(), len(h.Data))
	}
	data := make([]float32, len(h.Data))
	copy(data, h.Data)
	return core.NewTensor(h.Shape, data), nil
}

// Download copies t into a new host tensor.
func (be *Backend) Download(t *core.Tensor) (core.HostTensor, error) {
	data, err := floats("download", "t", t)
	if err != nil {
		return core.HostTensor{}, err
	}
	out := make([]float32, len(data))
	copy(out, data)
	return core.HostTensor{Shape: t.Shape().Clone(), Data: out}, nil
}

// Free is a no-op: CPU storage is ordinary Go memory that the garbage collector reclaims once the caller
// drops its last reference to t (and to every view of it). The CPU backend cannot detect use after Free.
func (be *Backend) Free(t *core.Tensor) { be.packs.drop(t) }

// floats returns the storage of t, the argument called name of op, after checking that t is a tensor of
// this backend whose storage matches its shape.
func floats(op, name string, t *core.Tensor) ([]float32, error) {
	if t == nil {
		return nil, fmt.Errorf("%s: %s is nil", op, name)
	}
	data, ok := t.Storage().([]float32)
	if !ok {
		return nil, fmt.Errorf("%s: %s is not a cpu tensor (storage %T; tensors of another backend must be "+
			"downloaded and uploaded again)", op, name, t.Storage())
	}
	if err := checkDims(op, name, t.Shape()); err != nil {
		return nil, err
	}
	if len(data) != t.Shape().Numel() {
		return nil, fmt.Errorf("%s: %s has shape %v but %d stored values", op, name, t.Shape(), len(data))
	}
	return data, nil
}

// checkDims rejects negative dimensions (their product could still look like a valid element count).
func checkDims(op, name string, s core.Shape) error {
	for _, d := range s {
		if d < 0 {
			return shapeError(op, "%s has a negative dimension: %v", name, s)
		}
	}
	return nil
}

// newTensor allocates a zeroed output tensor and returns it with its storage.
func newTensor(shape ...int) (*core.Tensor, []float32) {
	s := core.Shape(shape)
	data := make([]float32, s.Numel())
	return core.NewTensor(s, data), data
}

func shapeError(op, format string, args ...any) error {
	return &core.ShapeError{Op: op, Msg: fmt.Sprintf(format, args...)}
}

// parallelFor splits [0, n) into at most be.threads contiguous ranges of nearly equal length and calls
// fn(lo, hi) for each, concurrently, returning once all calls have returned. Items should cost about the
// same; ranges never overlap, so fn may write the outputs of its own items without locking.
func (be *Backend) parallelFor(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	workers := min(be.threads, n)
	if workers == 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		lo, hi := w*n/workers, (w+1)*n/workers
		wg.Go(func() { fn(lo, hi) })
	}
	fn(0, n/workers)
	wg.Wait()
}

// elemBlock is the number of elements below which elementwise work is not worth another goroutine.
const elemBlock = 1 << 14

// parallelElems is parallelFor for cheap per-element work on n elements: it hands out ranges of at least
// elemBlock elements so that small tensors are processed on the calling goroutine.
func (be *Backend) parallelElems(n int, fn func(lo, hi int)) {
	blocks := (n + elemBlock - 1) / elemBlock
	be.parallelFor(blocks, func(b0, b1 int) {
		fn(b0*elemBlock, min(b1*elemBlock, n))
	})
}
