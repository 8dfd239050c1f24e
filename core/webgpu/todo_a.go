package webgpu

// Placeholders until the kernels land (this file is deleted by then).

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

func (b *Backend) Linear(x, w, bias *core.Tensor) (*core.Tensor, error) {
	return nil, fmt.Errorf("linear: %w", core.ErrUnsupported)
}
func (b *Backend) Attention(q, k, v *core.Tensor, heads int, scale float32, mask *core.Tensor) (*core.Tensor, error) {
	return nil, fmt.Errorf("attention: %w", core.ErrUnsupported)
}
func (b *Backend) LayerNorm(x *core.Tensor, eps float32) (*core.Tensor, error) {
	return nil, fmt.Errorf("layernorm: %w", core.ErrUnsupported)
}
func (b *Backend) GroupNorm(x *core.Tensor, groups int, w, bias *core.Tensor, eps float32, silu bool) (*core.Tensor, error) {
	return nil, fmt.Errorf("groupnorm: %w", core.ErrUnsupported)
}
func (b *Backend) NormalizeHeads(x *core.Tensor, heads int, scale *core.Tensor) (*core.Tensor, error) {
	return nil, fmt.Errorf("normalize: %w", core.ErrUnsupported)
}
