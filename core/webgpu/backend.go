package webgpu

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cogentcore/webgpu/wgpu"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/shaders"
)

// ErrNoAdapter: no usable WebGPU adapter or device (no driver, no browser support).
var ErrNoAdapter = errors.New("webgpu: no usable adapter")

// ErrDeviceLost: the GPU device was lost (driver reset, out of memory, tab in the background too long).
// Tensors of the backend are gone; build a new backend to continue.
var ErrDeviceLost = fmt.Errorf("webgpu: %w", core.ErrDeviceLost)

// AdapterInfo names the GPU a backend runs on.
type AdapterInfo struct {
	Name, Backend, Driver, Vendor string
}

func (a AdapterInfo) String() string {
	s := a.Name + " (" + a.Backend
	if a.Driver != "" {
		s += ", " + a.Driver
	}
	return s + ")"
}

// Backend implements core.Backend with WGSL compute kernels. Its methods must be called from one goroutine
// at a time (the mutex guards against accidental concurrent use, it does not make the ops concurrent).
type Backend struct {
	mu     sync.Mutex
	dev    *wgpu.Device
	queue  *wgpu.Queue
	info   AdapterInfo
	limits wgpu.Limits

	pipelines map[pipeKey]*pipeline
	pool      map[uint64][]*wgpu.Buffer // free buffers by rounded size
	pooled    uint64                    // bytes held in the pool
	outputs   map[uint64]int            // live op outputs (pooled buffers in use) by bucket size
	created   int                       // op output buffers created so far
	released  int                       // idle buffers given back by ReleaseIdle so far
	live      uint64                    // bytes in live tensors
	peak      uint64                    // peak of live + pooled + stagingSize
	uploaded  uint64                    // of live: exactly sized uploads (weights, host inputs)
	atPeak    MemoryStats               // the breakdown when peak was last raised
	largest   uint64                    // largest single buffer allocated

	// staging is the mappable buffer readbacks copy through, kept between them (creating a mappable buffer
	// per readback cost ~4 ms each on an H100's driver) and grown to the largest readback so far.
	staging     *wgpu.Buffer
	stagingSize uint64
	host        HostTimes // where the host's time went (HostTimes)
	batch       int       // dispatches per submission (WEBVAR_WGPU_BATCH; arenaSlots by default)

	enc      *wgpu.CommandEncoder // pending work, nil when idle
	pass     *wgpu.ComputePassEncoder
	arena    *wgpu.Buffer // uniform slots of the pending dispatches
	arenaCPU []byte
	pending  []string // op names of pending dispatches, for error messages
	release  []func() // objects to release once the pending work is submitted
	// lost is the device-lost message: set once, by DeviceLost, from any goroutine (the browser's
	// device.lost promise, a test, a front end's watchdog) or by a wait that gave up on the device.
	lost atomic.Pointer[string]
	// waitLimit bounds a wait for the GPU (gpuWaitLimit; tests shorten it).
	waitLimit time.Duration
	// abandoned counts waits that gave up with a wgpu-native callback still outstanding: Close keeps
	// the collector off while it releases the device, in case releasing runs the callback (callback_native.go).
	abandoned int
	sync      bool   // WEBVAR_WGPU_SYNC
	dumpDir   string // WEBVAR_DUMP_WGSL
	closed    bool
	// loseAfter, when > 0 (tests), counts ops down to a simulated device loss: the op that brings it to
	// 0 fails with ErrDeviceLost, as if the device had been lost just before it (faults_test.go).
	loseAfter int
	// guard, when > 0 (tests), pads every op output with guard bytes of a sentinel pattern that the
	// kernels can reach (the binding covers it) and Download verifies, catching out-of-bounds writes.
	guard uint64
}

// guardWord is the sentinel of guard regions: a NaN payload no kernel produces by accident.
const guardWord = 0x7fc0bad0

const (
	slotSize   = 256 // minUniformBufferOffsetAlignment
	arenaSlots = 256
	// defaultBatch is how many dispatches are recorded before they are submitted. The GPU idles until a
	// submission, so submitting early lets it work while the host records the rest of a scale; each
	// submission costs the host ~0.1-0.2 ms. On an H100, VAR-d16 took 0.323 s per image submitting every
	// 256 dispatches and 0.258 s every 64 (webvar bench -model d16 -backend webgpu -quant int4 with
	// WEBVAR_WGPU_BATCH, README).
	defaultBatch = 64
)

// gpuBuf is a tensor's storage: a storage buffer and the byte size the tensor uses. Reshaped views share
// the same gpuBuf, so freeing any of them marks all of them freed.
type gpuBuf struct {
	buf      *wgpu.Buffer
	bytes    uint64 // the tensor's bytes
	guard    uint64 // guard bytes after them (bound too), 0 outside tests
	poolSize uint64 // the pool bucket it came from; 0 for exactly sized uploads
	freed    bool
}

// New opens the default native adapter (see the package doc for WEBVAR_WGPU_BACKEND). In the browser use
// NewFromDevice with a device from wasm/jsgpu.
func New() (*Backend, error) {
	b := newBackend()
	dev, info, limits, err := openDevice(b.DeviceLost)
	if err != nil {
		return nil, err
	}
	if err := b.init(dev, info, limits); err != nil {
		return nil, err
	}
	return b, nil
}

// NewFromDevice builds the backend on an already opened device (the browser's, from wasm/jsgpu). limits
// must be the device's limits. Report a lost device with DeviceLost.
func NewFromDevice(dev *wgpu.Device, info AdapterInfo, limits wgpu.Limits) (*Backend, error) {
	b := newBackend()
	if err := b.init(dev, info, limits); err != nil {
		return nil, err
	}
	return b, nil
}

func newBackend() *Backend {
	batch := defaultBatch
	if n, err := strconv.Atoi(os.Getenv("WEBVAR_WGPU_BATCH")); err == nil && n >= 1 && n <= arenaSlots {
		batch = n
	}
	return &Backend{pipelines: map[pipeKey]*pipeline{}, pool: map[uint64][]*wgpu.Buffer{},
		outputs: map[uint64]int{}, batch: batch, waitLimit: gpuWaitLimit,
		sync: os.Getenv("WEBVAR_WGPU_SYNC") == "1", dumpDir: os.Getenv("WEBVAR_DUMP_WGSL")}
}

// DeviceLost marks the device lost (called from the platform's device-lost notification): every later op
// fails with ErrDeviceLost and msg, and a wait for the GPU in progress gives up within a poll. It may be
// called from any goroutine, while another uses the backend; the first message is kept.
func (b *Backend) DeviceLost(msg string) {
	if msg == "" {
		msg = "no reason given"
	}
	b.lost.CompareAndSwap(nil, &msg)
}

func (b *Backend) init(dev *wgpu.Device, info AdapterInfo, limits wgpu.Limits) error {
	b.dev, b.info, b.limits = dev, info, limits
	b.queue = dev.GetQueue()
	var err error
	b.arena, err = dev.CreateBuffer(&wgpu.BufferDescriptor{Label: "uniform arena", Size: slotSize * arenaSlots,
		Usage: wgpu.BufferUsageUniform | wgpu.BufferUsageCopyDst})
	if err != nil {
		dev.Release()
		return fmt.Errorf("webgpu: uniform arena: %w", err)
	}
	return nil
}

// Name is "webgpu".
func (b *Backend) Name() string { return "webgpu" }

// Adapter describes the GPU.
func (b *Backend) Adapter() AdapterInfo { return b.info }

// MaxBindingBytes is the largest storage buffer a kernel can bind on this device.
func (b *Backend) MaxBindingBytes() uint64 { return b.limits.MaxStorageBufferBindingSize }

// PeakBytes is the largest amount of GPU buffer memory (live tensors, the reuse pool and the readback
// buffer) held so far.
func (b *Backend) PeakBytes() uint64 { return b.peak }

// Close releases the device and everything on it.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	if b.abandoned > 0 {
		defer holdGC()() // a mapping given up on may call back while the device is released
	}
	if b.lostErr() != nil {
		// Never submit to a lost device: wgpu-native treats a failed submission as fatal (it aborts the
		// process instead of reporting an error).
		b.abandonLocked()
	} else {
		_ = b.flushLocked()
	}
	for _, p := range b.pipelines {
		p.release()
	}
	for _, bufs := range b.pool {
		for _, buf := range bufs {
			releaseBuffer(buf)
		}
	}
	releaseBuffer(b.arena)
	if b.staging != nil {
		releaseBuffer(b.staging)
	}
	b.queue.Release()
	b.dev.Release()
}

func (b *Backend) usable() error {
	if b.closed {
		return errors.New("webgpu: backend closed")
	}
	return b.lostErr()
}

// Lost returns the error every op now fails with once the device is lost (DeviceLost, or a wait for the
// GPU that gave up), else nil: a front end that keeps a backend between runs opens a new one instead.
func (b *Backend) Lost() error { return b.lostErr() }

// opUsable is usable at the start of an op (an upload, a download, a dispatch): where tests simulate a
// loss at a chosen op (loseAfter).
func (b *Backend) opUsable() error {
	if b.loseAfter > 0 {
		if b.loseAfter--; b.loseAfter == 0 {
			b.DeviceLost("simulated loss (test)")
		}
	}
	return b.usable()
}

// lostErr is the device-lost error once DeviceLost has been called, else nil.
func (b *Backend) lostErr() error {
	if msg := b.lost.Load(); msg != nil {
		return fmt.Errorf("%w: %s", ErrDeviceLost, *msg)
	}
	return nil
}

func roundSize(n uint64) uint64 {
	if n <= 4096 {
		return 4096
	}
	// Round up to a quarter-power of two: at most 25% waste, few distinct buckets.
	p := uint64(1)
	for p*2 <= n {
		p *= 2
	}
	q := p / 4
	return (n + q - 1) / q * q
}

// alloc returns a storage buffer of at least n bytes for an op output.
func (b *Backend) alloc(n uint64, what string) (*gpuBuf, error) {
	if n > b.limits.MaxStorageBufferBindingSize {
		return nil, fmt.Errorf("%s: %d bytes exceed this device's storage binding limit of %d bytes", what, n, b.limits.MaxStorageBufferBindingSize)
	}
	size := roundSize(n + b.guard)
	if l := b.pool[size]; len(l) > 0 {
		buf := l[len(l)-1]
		b.pool[size] = l[:len(l)-1]
		b.pooled -= size
		b.live += size
		b.outputs[size]++
		return b.guarded(&gpuBuf{buf: buf, bytes: n, poolSize: size})
	}
	t0 := time.Now()
	buf, err := b.dev.CreateBuffer(&wgpu.BufferDescriptor{Label: what, Size: size,
		Usage: wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst})
	b.host.Create += time.Since(t0)
	if err != nil {
		return nil, fmt.Errorf("%s: allocating %d bytes: %w", what, size, err)
	}
	b.live += size
	b.outputs[size]++
	b.created++
	b.notePeakLocked(size)
	return b.guarded(&gpuBuf{buf: buf, bytes: n, poolSize: size})
}

// guarded fills g's guard region with the sentinel. Pending dispatches may still write the reused
// buffer (as an earlier, larger tensor), and a queue write lands before them, so flush first.
func (b *Backend) guarded(g *gpuBuf) (*gpuBuf, error) {
	if b.guard == 0 {
		return g, nil
	}
	if err := b.flushLocked(); err != nil {
		return nil, err
	}
	g.guard = b.guard
	words := make([]uint32, b.guard/4)
	for i := range words {
		words[i] = guardWord
	}
	if err := b.writeBufferLocked(g.buf, g.bytes, wgpu.ToBytes(words)); err != nil {
		return nil, fmt.Errorf("guard region: %w", err)
	}
	return g, nil
}

func (b *Backend) storage(t *core.Tensor, what string) (*gpuBuf, error) {
	if t == nil {
		return nil, fmt.Errorf("%s: nil tensor", what)
	}
	g, ok := t.Storage().(*gpuBuf)
	if _, quant := t.Storage().(*quantBuf); quant {
		return nil, fmt.Errorf("%s: tensor %v is a quantized weight, which only Linear accepts", what, t.Shape())
	}
	if !ok {
		return nil, fmt.Errorf("%s: tensor %v is not a webgpu tensor", what, t.Shape())
	}
	if g.freed {
		return nil, fmt.Errorf("%s: tensor %v used after Free", what, t.Shape())
	}
	return g, nil
}

// operand returns t's buffer after the checks the CPU reference makes on every input: t is a live tensor
// of this backend and has no negative dimension (a tensor built from raw storage could carry one).
func (b *Backend) operand(op, name string, t *core.Tensor) (*gpuBuf, error) {
	g, err := b.storage(t, op+" "+name)
	if err != nil {
		return nil, err
	}
	if err := checkDims(op, name, t.Shape()); err != nil {
		return nil, err
	}
	return g, nil
}

// checkDims rejects negative dimensions (their product could still look like a valid element count).
func checkDims(op, name string, s core.Shape) error {
	for _, d := range s {
		if d < 0 {
			return &core.ShapeError{Op: op, Msg: fmt.Sprintf("%s has a negative dimension: %v", name, s)}
		}
	}
	return nil
}

// Upload copies h into a new buffer (never a pooled one: a pooled buffer may still be read by pending
// dispatches, and a queue write would land before them).
func (b *Backend) Upload(h core.HostTensor) (*core.Tensor, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.opUsable(); err != nil {
		return nil, err
	}
	for _, d := range h.Shape {
		if d < 0 {
			return nil, &core.ShapeError{Op: "upload", Msg: fmt.Sprintf("negative dimension in %v", h.Shape)}
		}
	}
	n := h.Shape.Numel()
	if len(h.Data) != n {
		return nil, &core.ShapeError{Op: "upload", Msg: fmt.Sprintf("%d values for shape %v", len(h.Data), h.Shape)}
	}
	bytes := uint64(max(n, 1)) * 4
	if bytes > b.limits.MaxStorageBufferBindingSize {
		return nil, fmt.Errorf("upload: tensor %v has %d bytes, over this device's storage binding limit of %d", h.Shape, bytes, b.limits.MaxStorageBufferBindingSize)
	}
	data := wgpu.ToBytes(h.Data)
	if n == 0 {
		data = make([]byte, 4)
	}
	buf, err := b.dev.CreateBufferInit(&wgpu.BufferInitDescriptor{Label: "tensor", Contents: data,
		Usage: wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst})
	if err != nil {
		return nil, fmt.Errorf("upload %v: %w", h.Shape, err)
	}
	b.live += bytes
	b.uploaded += bytes
	b.notePeakLocked(bytes)
	return core.NewTensor(h.Shape, &gpuBuf{buf: buf, bytes: bytes}), nil
}

// Download flushes pending work and reads t back.
func (b *Backend) Download(t *core.Tensor) (core.HostTensor, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.opUsable(); err != nil {
		return core.HostTensor{}, err
	}
	g, err := b.storage(t, "download")
	if err != nil {
		return core.HostTensor{}, err
	}
	out := make([]float32, t.Shape().Numel())
	err = b.readLocked(g.buf, g.bytes+g.guard, func(raw []byte) error {
		for i, w := range wgpu.FromBytes[uint32](raw[g.bytes:]) {
			if w != guardWord {
				return fmt.Errorf("download %v: a kernel wrote past the end of its output (guard word %d is %#x)", t.Shape(), i, w)
			}
		}
		copy(out, wgpu.FromBytes[float32](raw))
		return nil
	})
	if err != nil {
		return core.HostTensor{}, err
	}
	return core.HostTensor{Shape: t.Shape().Clone(), Data: out}, nil
}

// readLocked reads size bytes of buf after all pending work and hands them to use, which must copy what
// it keeps: raw is the mapped readback buffer, valid only during the call (one copy instead of two).
func (b *Backend) readLocked(buf *wgpu.Buffer, size uint64, use func(raw []byte) error) error {
	staging, err := b.stagingLocked(size)
	if err != nil {
		return err
	}
	if err := b.encoderLocked(); err != nil {
		return err
	}
	b.endPassLocked()
	if err := b.enc.CopyBufferToBuffer(buf, 0, staging, 0, size); err != nil {
		// The encoder now holds a command that failed validation: submitting it would abort the process
		// (flushLocked), so the pending work is dropped with it and the backend cannot be trusted again.
		b.abandonLocked()
		b.dropStagingLocked()
		b.DeviceLost(fmt.Sprintf("download: copying into the readback buffer failed, the pending GPU work was dropped: %v", err))
		return b.lostErr()
	}
	b.pending = append(b.pending, "download")
	if err := b.flushLocked(); err != nil {
		return err
	}
	var status wgpu.BufferMapAsyncStatus
	done := false
	defer holdGC()() // until the mapping's callback has run (callback_native.go)
	if err := staging.MapAsync(wgpu.MapModeRead, 0, size, func(s wgpu.BufferMapAsyncStatus) {
		status, done = s, true
	}); err != nil {
		b.dropStagingLocked()
		return fmt.Errorf("download: map: %w", err)
	}
	if err := b.waitLocked(&done, "download"); err != nil {
		b.dropStagingLocked() // possibly still mapped: never reuse it
		return err
	}
	if !done || status != wgpu.BufferMapAsyncStatusSuccess {
		b.dropStagingLocked()
		return fmt.Errorf("download: mapping the readback buffer failed (%v)", status)
	}
	t0 := time.Now()
	err = use(staging.GetMappedRange(0, uint(size)))
	staging.Unmap()
	b.host.Copy += time.Since(t0)
	return err
}

// stagingLocked returns the readback buffer, (re)created when it is smaller than size bytes. Its size
// counts towards the peak (MemoryStats.Readback): at most the largest readback (for VAR-d16 the last
// scale's logits, 8.4 MB).
func (b *Backend) stagingLocked(size uint64) (*wgpu.Buffer, error) {
	if b.staging != nil && b.stagingSize >= size {
		return b.staging, nil
	}
	b.dropStagingLocked()
	n := roundSize(size)
	t0 := time.Now()
	staging, err := b.dev.CreateBuffer(&wgpu.BufferDescriptor{Label: "readback", Size: n,
		Usage: wgpu.BufferUsageMapRead | wgpu.BufferUsageCopyDst})
	b.host.Create += time.Since(t0)
	if err != nil {
		return nil, fmt.Errorf("download: staging buffer of %d bytes: %w", n, err)
	}
	b.staging, b.stagingSize = staging, n
	b.notePeakLocked(n)
	return staging, nil
}

// dropStagingLocked releases the readback buffer (after a failed mapping, or to replace it by a larger
// one); pending work that copies into it keeps it alive until done.
func (b *Backend) dropStagingLocked() {
	if b.staging == nil {
		return
	}
	staging := b.staging
	b.staging, b.stagingSize = nil, 0
	if b.enc != nil {
		b.release = append(b.release, func() { releaseBuffer(staging) })
	} else {
		releaseBuffer(staging)
	}
}

// Free returns t's buffer to the pool. Pending dispatches that read it still see its contents: a pooled
// buffer is only handed out again as the output of a later dispatch, which WebGPU orders after them.
func (b *Backend) Free(t *core.Tensor) {
	if t == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if g, ok := t.Storage().(*gpuBuf); ok {
		b.freeLocked(g)
	}
	if q, ok := t.Storage().(*quantBuf); ok { // quantized weights (quant.go)
		b.freeQuantLocked(q)
	}
}

// freeLocked is Free for code that holds b.mu (ops releasing scratch buffers or an output after a failed
// dispatch).
func (b *Backend) freeLocked(g *gpuBuf) {
	if g == nil || g.freed || b.closed {
		return
	}
	g.freed = true
	if g.poolSize == 0 {
		// Uploads are exactly sized: release them (after pending work reads them) instead of pooling.
		b.live -= g.bytes
		b.uploaded -= g.bytes
		buf := g.buf
		if b.enc != nil {
			b.release = append(b.release, func() { releaseBuffer(buf) })
		} else {
			releaseBuffer(buf)
		}
		return
	}
	size := g.poolSize
	b.live -= size
	b.outputs[size]--
	b.pool[size] = append(b.pool[size], g.buf)
	b.pooled += size
}

var _ core.IdleReleaser = (*Backend)(nil)

// Asynchronous reports that ops record work for the GPU and return before it has run (core.Asynchronous).
func (b *Backend) Asynchronous() bool { return true }

var _ core.Asynchronous = (*Backend)(nil)

// ReleaseIdle gives the pool's buffers back to the device (core.IdleReleaser). The pool reuses a buffer
// only for an output of the same size bucket, and a generation's phases use buffers of disjoint sizes: the
// transformer's (its KV cache included) and the VQVAE decoder's. Kept across phases, each phase's buffers
// would sit idle beside the next one's: for VAR-d16 int8, ~220 MB of decoder activations during the
// transformer and the transformer's ~270 MB (201 MB of KV cache) during the decoder, on top of 617 MB of
// weights. The price is creating the buffers anew in each phase (~260 per d16 image). Pending work may
// still read a pooled buffer (Free pools buffers that queued dispatches read), so it is submitted first.
func (b *Backend) ReleaseIdle() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(); err != nil {
		return err
	}
	if b.pooled == 0 {
		return nil
	}
	if err := b.flushLocked(); err != nil {
		return err
	}
	for size, bufs := range b.pool {
		for _, buf := range bufs {
			releaseBuffer(buf)
		}
		b.released += len(bufs)
		delete(b.pool, size)
	}
	b.pooled = 0
	return nil
}

// encoderLocked makes sure a command encoder is open.
func (b *Backend) encoderLocked() error {
	if b.enc != nil {
		return nil
	}
	enc, err := b.dev.CreateCommandEncoder(nil)
	if err != nil {
		return fmt.Errorf("webgpu: command encoder: %w", err)
	}
	b.enc = enc
	return nil
}

func (b *Backend) endPassLocked() {
	if b.pass != nil {
		b.pass.End()
		b.pass.Release()
		b.pass = nil
	}
}

// abandonLocked drops the pending work without submitting it, releasing what it held.
func (b *Backend) abandonLocked() {
	if b.pass != nil {
		b.pass.End()
		b.pass.Release()
		b.pass = nil
	}
	if b.enc != nil {
		b.enc.Release()
		b.enc = nil
	}
	b.arenaCPU = b.arenaCPU[:0]
	b.pending = nil
	for _, r := range b.release {
		r()
	}
	b.release = nil
}

// flushLocked submits the pending work (with its uniforms) and releases what it no longer needs.
func (b *Backend) flushLocked() error {
	if b.enc == nil {
		return nil
	}
	if err := b.lostErr(); err != nil {
		// The device may be gone: a submission wgpu-native rejects aborts the process.
		b.abandonLocked()
		return err
	}
	b.endPassLocked()
	ops := b.pending
	b.pending = nil
	defer func() {
		for _, r := range b.release {
			r()
		}
		b.release = nil
	}()
	if len(b.arenaCPU) > 0 {
		if err := b.writeBufferLocked(b.arena, 0, b.arenaCPU); err != nil {
			b.enc.Release()
			b.enc = nil
			b.arenaCPU = b.arenaCPU[:0]
			return fmt.Errorf("webgpu: writing uniforms: %w", err)
		}
		b.arenaCPU = b.arenaCPU[:0]
	}
	t0 := time.Now()
	cmd, err := b.enc.Finish(nil)
	b.enc.Release()
	b.enc = nil
	if err != nil {
		return fmt.Errorf("webgpu: recording %s: %w", summarize(ops), err)
	}
	b.queue.Submit(cmd)
	cmd.Release()
	b.host.Submit += time.Since(t0)
	b.host.Submissions++
	if err := b.usable(); err != nil {
		return fmt.Errorf("running %s: %w", summarize(ops), err)
	}
	return nil
}

func summarize(ops []string) string {
	if len(ops) == 0 {
		return "no ops"
	}
	if len(ops) <= 6 {
		return fmt.Sprint(ops)
	}
	return fmt.Sprintf("%v ... %v (%d ops)", ops[:3], ops[len(ops)-3:], len(ops))
}

// pipeKey identifies a compiled kernel variant.
type pipeKey struct {
	file    string // shaders/<file>
	variant string // the template parameters, formatted
}

type pipeline struct {
	pipe    *wgpu.ComputePipeline
	layout  *wgpu.BindGroupLayout
	playout *wgpu.PipelineLayout
	module  *wgpu.ShaderModule
	inputs  int
	outputs int
}

func (p *pipeline) release() {
	p.pipe.Release()
	p.playout.Release()
	p.layout.Release()
	p.module.Release()
}

// kernel describes a kernel variant: its file, template parameters and buffer counts.
type kernel struct {
	file    string
	params  any // template parameters (comparable, printed into the cache key)
	inputs  int
	outputs int
}

// pipelineLocked returns the cached pipeline of k, building it on first use with an explicit bind group
// layout (the browser binding cannot derive one from the shader).
func (b *Backend) pipelineLocked(k kernel) (*pipeline, error) {
	key := pipeKey{k.file, fmt.Sprintf("%+v", k.params)}
	if p, ok := b.pipelines[key]; ok {
		return p, nil
	}
	src, err := shaders.Expand(k.file, k.params)
	if err != nil {
		return nil, err
	}
	if b.dumpDir != "" {
		name := fmt.Sprintf("%s.%x.wgsl", k.file, len(b.pipelines))
		_ = os.WriteFile(filepath.Join(b.dumpDir, name), []byte("// "+key.variant+"\n"+src), 0o644)
	}
	mod, err := b.dev.CreateShaderModule(&wgpu.ShaderModuleDescriptor{Label: k.file,
		WGSLDescriptor: &wgpu.ShaderModuleWGSLDescriptor{Code: src}})
	if err != nil {
		return nil, fmt.Errorf("compiling %s %s: %w", k.file, key.variant, err)
	}
	entries := []wgpu.BindGroupLayoutEntry{{Binding: 0, Visibility: wgpu.ShaderStageCompute,
		Buffer: wgpu.BufferBindingLayout{Type: wgpu.BufferBindingTypeUniform}}}
	for i := 0; i < k.inputs+k.outputs; i++ {
		typ := wgpu.BufferBindingTypeReadOnlyStorage
		if i >= k.inputs {
			typ = wgpu.BufferBindingTypeStorage
		}
		entries = append(entries, wgpu.BindGroupLayoutEntry{Binding: uint32(i + 1), Visibility: wgpu.ShaderStageCompute,
			Buffer: wgpu.BufferBindingLayout{Type: typ}})
	}
	bgl, err := b.dev.CreateBindGroupLayout(&wgpu.BindGroupLayoutDescriptor{Label: k.file, Entries: entries})
	if err != nil {
		mod.Release()
		return nil, fmt.Errorf("%s: bind group layout: %w", k.file, err)
	}
	pl, err := b.dev.CreatePipelineLayout(&wgpu.PipelineLayoutDescriptor{Label: k.file, BindGroupLayouts: []*wgpu.BindGroupLayout{bgl}})
	if err != nil {
		bgl.Release()
		mod.Release()
		return nil, fmt.Errorf("%s: pipeline layout: %w", k.file, err)
	}
	cp, err := b.dev.CreateComputePipeline(&wgpu.ComputePipelineDescriptor{Layout: pl,
		Compute: wgpu.ProgrammableStageDescriptor{Module: mod, EntryPoint: "main"}})
	if err != nil {
		pl.Release()
		bgl.Release()
		mod.Release()
		return nil, fmt.Errorf("compiling %s %s: %w", k.file, key.variant, err)
	}
	p := &pipeline{pipe: cp, layout: bgl, playout: pl, module: mod, inputs: k.inputs, outputs: k.outputs}
	b.pipelines[key] = p
	return p, nil
}

// dispatch records one kernel run: uniforms (4-byte words), input and output buffers, and the workgroup
// grid. op names the operation in errors. When it fails, the output buffers are returned to the pool (ops
// return no tensor then, and freeing is idempotent), so a failing op leaks nothing.
func (b *Backend) dispatch(op string, k kernel, uniforms []uint32, bufs []*gpuBuf, grid [3]uint32) error {
	err := b.record(op, k, uniforms, bufs, grid)
	if err != nil && len(bufs) == k.inputs+k.outputs {
		for _, g := range bufs[k.inputs:] {
			b.freeLocked(g)
		}
	}
	return err
}

func (b *Backend) record(op string, k kernel, uniforms []uint32, bufs []*gpuBuf, grid [3]uint32) error {
	if err := b.opUsable(); err != nil {
		return err
	}
	if len(bufs) != k.inputs+k.outputs {
		return fmt.Errorf("%s: %d buffers for a kernel with %d", op, len(bufs), k.inputs+k.outputs)
	}
	if len(uniforms)*4 > slotSize {
		return fmt.Errorf("%s: %d uniform words exceed a %d-byte slot", op, len(uniforms), slotSize)
	}
	maxWG := b.limits.MaxComputeWorkgroupsPerDimension
	for _, g := range grid {
		if g > maxWG {
			return fmt.Errorf("%s: %v workgroups exceed this device's limit of %d per dimension", op, grid, maxWG)
		}
	}
	p, err := b.pipelineLocked(k)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if len(b.arenaCPU)/slotSize >= b.batch {
		if err := b.flushLocked(); err != nil {
			return err
		}
	}
	if err := b.encoderLocked(); err != nil {
		return err
	}
	t0 := time.Now()
	defer func() { b.host.Record += time.Since(t0); b.host.Dispatches++ }()
	off := uint64(len(b.arenaCPU))
	slot := make([]byte, slotSize)
	copy(slot, wgpu.ToBytes(uniforms))
	b.arenaCPU = append(b.arenaCPU, slot...)

	entries := []wgpu.BindGroupEntry{{Binding: 0, Buffer: b.arena, Offset: off, Size: slotSize}}
	for i, g := range bufs {
		entries = append(entries, wgpu.BindGroupEntry{Binding: uint32(i + 1), Buffer: g.buf, Offset: 0, Size: g.bytes + g.guard})
	}
	bg, err := b.dev.CreateBindGroup(&wgpu.BindGroupDescriptor{Label: op, Layout: p.layout, Entries: entries})
	if err != nil {
		return fmt.Errorf("%s: bind group: %w", op, err)
	}
	b.release = append(b.release, bg.Release)
	if b.pass == nil {
		b.pass = b.enc.BeginComputePass(nil)
	}
	b.pass.SetPipeline(p.pipe)
	b.pass.SetBindGroup(0, bg, nil)
	b.pass.DispatchWorkgroups(grid[0], grid[1], grid[2])
	b.pending = append(b.pending, op)
	if b.sync {
		if err := b.flushLocked(); err != nil {
			return err
		}
		return b.finishLocked(op)
	}
	return nil
}

// Finish submits the pending work and waits until the device has completed everything submitted.
func (b *Backend) Finish() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(); err != nil {
		return err
	}
	if err := b.flushLocked(); err != nil {
		return err
	}
	return b.finishLocked("finish")
}

func (b *Backend) finishLocked(what string) error {
	done := false
	defer holdGC()() // until the callback has run (callback_native.go)
	b.queue.OnSubmittedWorkDone(func(wgpu.QueueWorkDoneStatus) { done = true })
	return b.waitLocked(&done, what)
}

// gpuWaitLimit bounds how long a readback waits for the GPU before declaring the device hung, and so lost.
// It is long because one submission of a large model on lavapipe can take minutes.
const gpuWaitLimit = 10 * time.Minute

// waitLocked polls the device until *done is set by a callback. It never uses a blocking Poll(true):
// wgpu-native gives up on that after 5 s, reports the work finished and frees buffers the GPU is still
// using (long kernels on lavapipe take that long). In the browser the callback has already run when
// MapAsync returned, so this returns at once. It gives up, with an error wrapping ErrDeviceLost, as soon
// as the device is reported lost (DeviceLost, from any goroutine) and after b.waitLimit, marking the
// device lost then: natively nothing reports a loss, and a callback that never comes must not hang the
// caller.
func (b *Backend) waitLocked(done *bool, what string) error {
	start := time.Now()
	defer func() { b.host.Wait += time.Since(start) }()
	pause := 20 * time.Microsecond
	for {
		b.dev.Poll(false, nil)
		if *done {
			return nil
		}
		if err := b.usable(); err != nil {
			b.abandoned++
			return fmt.Errorf("%s: %w", what, err)
		}
		if time.Since(start) > b.waitLimit {
			b.abandoned++
			b.DeviceLost(fmt.Sprintf("%s: the GPU did not finish within %v (device hung)", what, b.waitLimit))
			return b.lostErr()
		}
		time.Sleep(pause)
		// Capped low: a readback ends every transformer scale, and each microsecond slept past the GPU's
		// finish is added to the generation (a 2 ms cap cost ~1 ms per scale).
		pause = min(2*pause, maxPollPause)
	}
}

// maxPollPause is the longest sleep between two polls of the device while waiting.
const maxPollPause = 200 * time.Microsecond

// grid1D spreads n invocations of workgroups of wg over x and y (x <= 65535); kernels recover the flat
// index as gid.x + gid.y * num_workgroups.x * wg.
func grid1D(n, wg int) [3]uint32 {
	groups := (n + wg - 1) / wg
	if groups == 0 {
		groups = 1
	}
	x := min(groups, 65535)
	y := (groups + x - 1) / x
	return [3]uint32{uint32(x), uint32(y), 1}
}

// f32bits stores a float uniform in a u32 word (WGSL reads it through an f32 field).
func f32bits(f float32) uint32 { return math.Float32bits(f) }
