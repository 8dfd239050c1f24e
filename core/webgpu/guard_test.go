package webgpu

import (
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
)

// A kernel told to write one element too many must be caught by the guard region on download.
func TestGuardCatchesOutOfBoundsWrite(t *testing.T) {
	b := newTestBackend(t)
	x, err := b.Upload(core.HostTensor{Shape: core.Shape{5}, Data: []float32{1, 2, 3, 4, 5}})
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	in, _ := b.storage(x, "test")
	out, err := b.alloc(4*4, "test") // room for 4 elements
	if err == nil {
		k := kernel{file: "elementwise.wgsl", params: elemKernel{WG: elemWG, Inputs: 1, Expr: "x"}, inputs: 1, outputs: 1}
		err = b.dispatch("overrun", k, []uint32{5, 0, 0, 0, 0, 0, 0, 0}, []*gpuBuf{in, out}, grid1D(5, elemWG))
	}
	b.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Download(core.NewTensor(core.Shape{4}, out))
	if err == nil || !strings.Contains(err.Error(), "wrote past the end") {
		t.Fatalf("overrun not detected: %v", err)
	}
}

func TestUseAfterFreeIsAnError(t *testing.T) {
	b := newTestBackend(t)
	x, err := b.Upload(core.HostTensor{Shape: core.Shape{3}, Data: []float32{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.SiLU(x)
	if err != nil {
		t.Fatal(err)
	}
	b.Free(y)
	b.Free(y) // double free is harmless
	if _, err := b.Download(y); err == nil || !strings.Contains(err.Error(), "after Free") {
		t.Fatalf("download after free: %v", err)
	}
	v, _ := core.Reshape(x, 1, 3)
	b.Free(x)
	if _, err := b.SiLU(v); err == nil {
		t.Fatal("a view of a freed tensor was usable")
	}
}

// An output larger than the device allows must fail with an error naming the op, not crash or hang.
func TestOversizedOutputNamesTheOp(t *testing.T) {
	b := newTestBackend(t)
	x, err := b.Upload(core.HostTensor{Shape: core.Shape{1}, Data: []float32{1}})
	if err != nil {
		t.Fatal(err)
	}
	// A shape-only stand-in (validation and allocation happen before any read): upsampling [1, 1, 2, W]
	// gives 32*W output bytes, just over the binding limit.
	w := int(b.MaxBindingBytes()/32) + 1
	big := core.NewTensor(core.Shape{1, 1, 2, w}, x.Storage())
	_, err = b.Upsample2x(big)
	if err == nil || !strings.Contains(err.Error(), "upsample2x") || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized output: %v", err)
	}
	t.Log(err)
}
