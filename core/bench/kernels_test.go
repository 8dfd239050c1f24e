package bench

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/webgpu"
)

// Both sizes list the same kernels, each with a valid shape, and together they time every compute op of
// core.Backend: a new op makes this fail until it has a benchmark case.
func TestKernelTablesCoverEveryOp(t *testing.T) {
	small, err := Kernels(SizeSmall)
	if err != nil {
		t.Fatal(err)
	}
	d16, err := Kernels(SizeD16)
	if err != nil {
		t.Fatal(err)
	}
	if len(small) != len(d16) {
		t.Fatalf("%d small kernels, %d d16 kernels", len(small), len(d16))
	}
	timed := map[string]bool{}
	seen := map[string]bool{}
	for i, k := range small {
		if k.Name != d16[i].Name || k.Op != d16[i].Op {
			t.Errorf("kernel %d: small %s (%s), d16 %s (%s)", i, k.Name, k.Op, d16[i].Name, d16[i].Op)
		}
		if seen[k.Name] {
			t.Errorf("kernel %s listed twice", k.Name)
		}
		seen[k.Name] = true
		timed[k.Op] = true
	}
	infra := map[string]bool{"Name": true, "Upload": true, "Download": true, "Free": true}
	bt := reflect.TypeFor[core.Backend]()
	for i := range bt.NumMethod() {
		if m := bt.Method(i).Name; !infra[m] && !timed[m] {
			t.Errorf("no kernel times core.Backend.%s", m)
		}
	}
	for _, k := range d16 {
		if k.Bytes <= 0 || k.FLOPs < 0 || k.Shape == "" || k.Inputs == nil || k.Run == nil {
			t.Errorf("d16 %s: incomplete case %+v", k.Name, k)
		}
	}
}

// The operation counts of the brief's d16 shapes, worked out by hand.
func TestD16Counts(t *testing.T) {
	ks, err := Kernels(SizeD16)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Kernel{}
	for _, k := range ks {
		byName[k.Name] = k
	}
	for _, c := range []struct {
		name         string
		flops, bytes int64
	}{
		// 2*680*1024*3072 multiply-adds + 680*3072 bias adds; x, w, b, y.
		{"linear.qkv", 2*680*1024*3072 + 680*3072, 4 * (680*1024 + 3072*1024 + 3072 + 680*3072)},
		{"linear.fc2", 2*680*4096*1024 + 680*1024, 4 * (680*4096 + 1024*4096 + 1024 + 680*1024)},
		{"linear.head", 2*256*1024*4096 + 256*4096, 4 * (256*1024 + 4096*1024 + 4096 + 256*4096)},
		// B*H*L*S scores of d=64: two matmuls (4d) + softmax (5); q, k, v, out.
		{"attention", 2 * 16 * 256 * 680 * (4*64 + 5), 4 * (2*2*256*1024 + 2*2*680*1024)},
		{"conv3x3.hi", 2*128*65536*128*9 + 128*65536, 4 * (128*65536 + 128*128*9 + 128 + 128*65536)},
		{"conv3x3.lo", 2*512*256*512*9 + 512*256, 4 * (512*256 + 512*512*9 + 512 + 512*256)},
		{"nearest-code", 256 * 4096 * (2*32 + 3), 4 * (256*32 + 4096*32 + 256)},
		{"embedding", 0, 4 * (256 + 2*256*32)},
	} {
		k, ok := byName[c.name]
		if !ok {
			t.Errorf("no kernel %s", c.name)
			continue
		}
		if k.FLOPs != c.flops || k.Bytes != c.bytes {
			t.Errorf("%s: %d FLOPs, %d bytes; want %d, %d", c.name, k.FLOPs, k.Bytes, c.flops, c.bytes)
		}
	}
}

func TestAreaFLOPs(t *testing.T) {
	// 4 -> 2: four 2x2 windows (16 additions) and four divisions.
	if got := areaFLOPs(4, 2); got != 20 {
		t.Errorf("areaFLOPs(4, 2) = %d, want 20", got)
	}
	// 3 -> 2: windows [0, 2) and [1, 3) overlap: 2+2 per side, 16 additions, 4 divisions.
	if got := areaFLOPs(3, 2); got != 20 {
		t.Errorf("areaFLOPs(3, 2) = %d, want 20", got)
	}
	// Identity: one addition and one division per element.
	if got := areaFLOPs(13, 13); got != 2*169 {
		t.Errorf("areaFLOPs(13, 13) = %d, want %d", got, 2*169)
	}
}

func TestSelect(t *testing.T) {
	ks, err := Select(SizeSmall, "linear")
	if err != nil || len(ks) != 6 {
		t.Fatalf("filter linear: %d kernels, %v; want the 4 float and 2 quantized linears", len(ks), err)
	}
	ks, err = Select(SizeSmall, "attention,conv3x3.hi")
	if err != nil || len(ks) != 2 || ks[0].Name != "attention" || ks[1].Name != "conv3x3.hi" {
		t.Fatalf("two filters: %v, %v", ks, err)
	}
	if _, err := Select(SizeSmall, "no-such-op"); err == nil || !strings.Contains(err.Error(), "linear.qkv") {
		t.Errorf("unknown filter: %v, want an error listing the kernels", err)
	}
	if _, err := Select("huge", ""); err == nil {
		t.Error("unknown size accepted")
	}
}

func TestRunKernelsSmallCPU(t *testing.T) {
	b := cpu.New(0)
	var streamed []string
	res, err := RunKernels(b, KernelOptions{Size: SizeSmall, Reps: 2, Device: "test cpu",
		OnResult: func(r KernelResult) { streamed = append(streamed, r.Kernel) }})
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := Kernels(SizeSmall)
	if len(res) != len(ks) || len(streamed) != len(ks) {
		t.Fatalf("%d results, %d streamed, want %d", len(res), len(streamed), len(ks))
	}
	for i, r := range res {
		k := ks[i]
		if r.Kernel != k.Name || streamed[i] != k.Name || r.Backend != "cpu" || r.Device != "test cpu" ||
			r.Shape != k.Shape || r.FLOPs != k.FLOPs || r.Bytes != k.Bytes || r.Reps != 2 || r.Error != "" {
			t.Errorf("result %d: %+v for kernel %s", i, r, k.Name)
		}
		if !(r.Seconds > 0) {
			t.Errorf("%s: %g s per run", r.Kernel, r.Seconds)
			continue
		}
		if !near(r.GFLOPS, float64(k.FLOPs)/r.Seconds/1e9) || !near(r.GBPS, float64(k.Bytes)/r.Seconds/1e9) {
			t.Errorf("%s: %g GFLOP/s, %g GB/s for %d FLOPs, %d bytes in %g s", r.Kernel, r.GFLOPS, r.GBPS, k.FLOPs, k.Bytes, r.Seconds)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }

// slowBackend stands in for an asynchronous backend with pipeline compilation: the first LayerNorm is
// slow (compiling) and every Download waits (the queue draining).
type slowBackend struct {
	core.Backend
	compile, drain time.Duration
	compiled       bool
	downloads      int
}

func (s *slowBackend) LayerNorm(x *core.Tensor, eps float32) (*core.Tensor, error) {
	if !s.compiled {
		s.compiled = true
		time.Sleep(s.compile)
	}
	return s.Backend.LayerNorm(x, eps)
}

func (s *slowBackend) Download(t *core.Tensor) (core.HostTensor, error) {
	s.downloads++
	time.Sleep(s.drain)
	return s.Backend.Download(t)
}

// The timed batch includes waiting for completion (the Download) and excludes the warm-up run.
func TestTimingIncludesCompletionNotWarmUp(t *testing.T) {
	const reps = 3
	s := &slowBackend{Backend: cpu.New(1), compile: 400 * time.Millisecond, drain: 60 * time.Millisecond}
	res, err := RunKernels(s, KernelOptions{Size: SizeSmall, Filter: "layernorm", Reps: reps})
	if err != nil {
		t.Fatal(err)
	}
	total := time.Duration(res[0].Seconds * reps * float64(time.Second))
	if total < s.drain {
		t.Errorf("timed batch %v is shorter than the completion wait %v: completion not timed", total, s.drain)
	}
	// Generous: the batch itself is well under a millisecond of work plus one drain.
	if total >= s.compile {
		t.Errorf("timed batch %v includes the warm-up's %v compilation", total, s.compile)
	}
	if s.downloads != 2 { // warm-up and the one timed batch
		t.Errorf("%d downloads, want one per batch (2)", s.downloads)
	}
}

// With Reps 0 batches grow until one lasts MinTime.
func TestAdaptiveReps(t *testing.T) {
	const minTime = 30 * time.Millisecond
	res, err := RunKernels(cpu.New(1), KernelOptions{Size: SizeSmall, Filter: "add-mul-rows", MinTime: minTime})
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Reps < 2 {
		t.Errorf("%d reps of a microsecond kernel", r.Reps)
	}
	if total := time.Duration(r.Seconds * float64(r.Reps) * float64(time.Second)); total < minTime {
		t.Errorf("timed %d reps for %v, want >= %v", r.Reps, total, minTime)
	}
}

// failingBackend cannot run convolutions.
type failingBackend struct{ core.Backend }

func (failingBackend) Conv2d(x, w, b *core.Tensor, stride int, pad [4]int) (*core.Tensor, error) {
	return nil, fmt.Errorf("conv2d: %w", core.ErrUnsupported)
}

// A failing kernel is reported and the others still run.
func TestKernelErrorsAreReportedNotFatal(t *testing.T) {
	res, err := RunKernels(failingBackend{cpu.New(1)}, KernelOptions{Size: SizeSmall, Filter: "conv,bicubic", Reps: 1})
	if !errors.Is(err, core.ErrUnsupported) {
		t.Fatalf("err %v, want ErrUnsupported", err)
	}
	if len(res) != 3 {
		t.Fatalf("%d results, want 3", len(res))
	}
	for _, r := range res {
		isConv := strings.HasPrefix(r.Kernel, "conv")
		if isConv != (r.Error != "") || isConv != (r.Seconds == 0) {
			t.Errorf("%s: error %q, %g s", r.Kernel, r.Error, r.Seconds)
		}
	}
}

func TestRunKernelsRejectsBadOptions(t *testing.T) {
	for _, opt := range []KernelOptions{{Size: "xl"}, {Size: SizeSmall, Reps: -1}, {Size: SizeSmall, Filter: "zzz"}} {
		if res, err := RunKernels(cpu.New(1), opt); err == nil || res != nil {
			t.Errorf("%+v: %v, %d results; want an error and nothing run", opt, err, len(res))
		}
	}
}

func TestCPUDevice(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cpuinfo")
	info := "processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU 9000\n\nprocessor\t: 1\nmodel name\t: Example CPU 9000\n"
	if err := os.WriteFile(p, []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := cpuModel(p); got != "Example CPU 9000" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel(filepath.Join(t.TempDir(), "missing")); got != "" {
		t.Errorf("cpuModel of a missing file = %q", got)
	}
	if got := CPUDevice(3); !strings.HasSuffix(got, ", 3 threads") || strings.HasPrefix(got, ",") {
		t.Errorf("CPUDevice(3) = %q", got)
	}
}

// Every kernel runs on the WebGPU backend (lavapipe without a GPU), through the same timing path as the
// CPU: uploads, warm-up, a batch ended by a readback.
func TestRunKernelsSmallWebGPU(t *testing.T) {
	b, err := webgpu.New()
	if err != nil {
		t.Fatalf("%v (CI installs mesa-vulkan-drivers for lavapipe)", err)
	}
	defer b.Close()
	res, err := RunKernels(b, KernelOptions{Size: SizeSmall, Reps: 2, Device: b.Adapter().String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Backend != "webgpu" || !(r.Seconds > 0) || r.Reps != 2 {
			t.Errorf("%+v", r)
		}
	}
	t.Logf("%s: %d kernels", b.Adapter(), len(res))
}
