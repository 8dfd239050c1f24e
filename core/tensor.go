// Package core holds the engine's backend-neutral pieces: the Tensor handle, the Backend interface that every
// compute backend (cpu, webgpu) implements, the seeded RNG and small host-side helpers shared by the models.
//
// Models (core/vqvae, core/varmodel) only ever talk to a Backend: they never look inside a Tensor's storage,
// so the same model code runs on the CPU reference backend and on the WebGPU backend.
package core

import (
	"fmt"
	"strings"
)

// Shape is a row-major tensor shape, outermost dimension first (PyTorch order).
type Shape []int

// Numel is the number of elements, 1 for a scalar (empty shape).
func (s Shape) Numel() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Equal reports whether two shapes are identical.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy that does not alias s.
func (s Shape) Clone() Shape { return append(Shape(nil), s...) }

func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Tensor is an f32 tensor owned by a Backend. Its storage is opaque to everyone but that backend
// (Storage is for the owning backend's use only). Tensors are immutable from the model's point of view:
// every op returns a new tensor.
type Tensor struct {
	shape   Shape
	storage any
}

// NewTensor wraps backend-owned storage. Only backends call it.
func NewTensor(shape Shape, storage any) *Tensor {
	return &Tensor{shape: shape.Clone(), storage: storage}
}

// Shape returns the tensor's shape. The caller must not modify it. A nil tensor, what an op returns once
// an Ops sequence has failed, has no shape (nil): model code between the failure and its error check
// reads no dimensions from it instead of panicking.
func (t *Tensor) Shape() Shape {
	if t == nil {
		return nil
	}
	return t.shape
}

// Storage returns the backend-owned storage. Only the owning backend may use it.
func (t *Tensor) Storage() any { return t.storage }

// Dim returns dimension i; negative i counts from the end. Every dimension of a nil tensor (a failed
// op's result, see Shape) is 0.
func (t *Tensor) Dim(i int) int {
	if t == nil {
		return 0
	}
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// HostTensor is an f32 tensor in host memory: weights as read from a checkpoint, inputs and results.
type HostTensor struct {
	Shape Shape
	Data  []float32
}
