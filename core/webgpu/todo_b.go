package webgpu

// Placeholders until the kernels land (this file is deleted by then).

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

func (b *Backend) SliceLast(x *core.Tensor, off, n int) (*core.Tensor, error) {
	return nil, fmt.Errorf("slice: %w", core.ErrUnsupported)
}
func (b *Backend) Concat(axis int, ts ...*core.Tensor) (*core.Tensor, error) {
	return nil, fmt.Errorf("concat: %w", core.ErrUnsupported)
}
func (b *Backend) Transpose12(x *core.Tensor) (*core.Tensor, error) {
	return nil, fmt.Errorf("transpose: %w", core.ErrUnsupported)
}
func (b *Backend) Conv2d(x, w, bias *core.Tensor, stride int, pad [4]int) (*core.Tensor, error) {
	return nil, fmt.Errorf("conv2d: %w", core.ErrUnsupported)
}
func (b *Backend) Upsample2x(x *core.Tensor) (*core.Tensor, error) {
	return nil, fmt.Errorf("upsample2x: %w", core.ErrUnsupported)
}
func (b *Backend) ResizeBicubic(x *core.Tensor, outH, outW int) (*core.Tensor, error) {
	return nil, fmt.Errorf("bicubic: %w", core.ErrUnsupported)
}
func (b *Backend) ResizeArea(x *core.Tensor, outH, outW int) (*core.Tensor, error) {
	return nil, fmt.Errorf("area: %w", core.ErrUnsupported)
}
func (b *Backend) Embedding(table *core.Tensor, ids []int) (*core.Tensor, error) {
	return nil, fmt.Errorf("embedding: %w", core.ErrUnsupported)
}
func (b *Backend) NearestCode(z, codebook *core.Tensor) ([]int, error) {
	return nil, fmt.Errorf("nearest-code: %w", core.ErrUnsupported)
}
