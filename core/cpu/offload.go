package cpu

import "github.com/webvar/webvar/core"

// Offload runs Linear's matrix products (and, as a ConvOffload, Conv2d's sums) on another device: the
// browser's WebGL2 (wasm/webgl) where WebGPU is missing. Everything else stays on the CPU.
type Offload interface {
	// Name describes the device for Backend.Name ("webgl2").
	Name() string
	// LinearNT computes y_NM = x_NK · w_MKᵀ (y is [N, M], row-major, fully overwritten) and reports
	// whether it did; false (with a nil error) leaves the product to the CPU (sizes beyond the device's
	// limits, or too small to be worth the transfer). w identifies the weight across calls (it is the same
	// tensor every step, so its device copy can be kept); weight returns its values, dequantized for a
	// quantized w (quantized reports which). An error means the device failed (context lost, out of
	// memory): the op fails with it rather than silently changing device mid-run.
	LinearNT(w *core.Tensor, weight func() (w_MK []float32, quantized bool, err error), x_NK []float32, N, M, K int, y_NM []float32) (bool, error)
}

// WithOffload returns a copy of be whose Linear (and Conv2d, Conv2dAdd when o is a ConvOffload) hands its
// products to o first.
func (be *Backend) WithOffload(o Offload) *Backend {
	c := *be
	c.offload = o
	return &c
}

// offloadLinear tries o on Linear's product; w_MK is the float weight (nil for a quantized w, whose
// values q gives).
func (be *Backend) offloadLinear(w *core.Tensor, w_MK []float32, q core.QuantHost, a linearOperands, y_NM []float32) (bool, error) {
	weight := func() ([]float32, bool, error) {
		if w_MK != nil {
			return w_MK, false, nil
		}
		h, err := q.Dequantize()
		if err != nil {
			return nil, true, err
		}
		return h.Data, true, nil
	}
	return be.offload.LinearNT(w, weight, a.x_NK, a.N, a.M, a.K, y_NM)
}

// ConvGeom is a Conv2d's geometry: x [B, Ci, H, W], w [Co, Ci, KH, KW], stride, the top and left zero
// padding, and the output size Ho x Wo (the bottom and right padding follow from it).
type ConvGeom struct {
	B, Ci, H, W, Co, KH, KW, Stride, Top, Left, Ho, Wo int
}

// ConvOffload is an Offload that also runs Conv2d (without the bias, which the CPU adds): y_BOP is
// [B, Co, Ho*Wo], fully overwritten when it reports done.
type ConvOffload interface {
	Offload
	Conv2d(w *core.Tensor, w_OCUV []float32, x_BCHW []float32, g ConvGeom, y_BOP []float32) (bool, error)
}
