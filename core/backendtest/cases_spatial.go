package backendtest

import (
	"fmt"
	"math/rand"

	"github.com/webvar/webvar/core"
)

// Rows for Conv2d, Upsample2x, ResizeBicubic, ResizeArea, Embedding, NearestCode, SliceLast, Concat,
// Transpose12, Zeros and WriteRows. Sizes avoid multiples of tile sizes (16, 64, 128) so that every kernel's
// edge handling runs.
func convResizeCopyCases() []Case {
	var cs []Case

	// conv builds a Conv2d row: x [shape], w [co, ci, k, k] scaled like PyTorch's default init, bias optional.
	conv := func(name string, xShape []int, co, k, stride int, pad [4]int, bias bool) Case {
		ci := xShape[1]
		return Case{Name: name, Inputs: func(r *rand.Rand) []core.HostTensor {
			std := 1 / float64(ci*k*k)
			ins := []core.HostTensor{Randn(r, 0, 1, xShape...), Randn(r, 0, std*3, co, ci, k, k)}
			if bias {
				ins = append(ins, Randn(r, 0, 0.5, co))
			}
			return ins
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			var b *core.Tensor
			if bias {
				b = in[2]
			}
			return o.Conv2d(in[0], in[1], b, stride, pad)
		}, Tol: 1e-4}
	}
	cs = append(cs,
		conv("conv1x1-2x5x7x9-to3", []int{2, 5, 7, 9}, 3, 1, 1, [4]int{}, true),
		conv("conv3x3-s1p1-1x13x11x10-to17-bias", []int{1, 13, 11, 10}, 17, 3, 1, [4]int{1, 1, 1, 1}, true),
		conv("conv3x3-s1p1-1x13x11x10-to17-nobias", []int{1, 13, 11, 10}, 17, 3, 1, [4]int{1, 1, 1, 1}, false),
		conv("conv3x3-s2-pad0011-1x32x7x7-to32", []int{1, 32, 7, 7}, 32, 3, 2, [4]int{0, 0, 1, 1}, true),
		conv("conv3x3-s2-pad0011-1x8x9x12-to8", []int{1, 8, 9, 12}, 8, 3, 2, [4]int{0, 0, 1, 1}, true),
		conv("conv3x3-nopad-2x6x10x13-to70", []int{2, 6, 10, 13}, 70, 3, 1, [4]int{}, false),
		conv("conv3x3-s1p1-1x40x20x19-to130", []int{1, 40, 20, 19}, 130, 3, 1, [4]int{1, 1, 1, 1}, true),
		// Large enough for the WebGPU backend's wide tiles (the cases above take its small ones).
		conv("conv3x3-s1p1-1x4x128x128-to70-wide", []int{1, 4, 128, 128}, 70, 3, 1, [4]int{1, 1, 1, 1}, true),
	)
	// Conv2dAdd (fused where the backend can): res + conv, res [1, 17, 11, 10] after the inputs of conv.
	convAdd := func(name string, bias bool) Case {
		return Case{Name: name, Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 1, 13, 11, 10), Randn(r, 0, 3.0/(13*9), 17, 13, 3, 3),
				Randn(r, 0, 0.5, 17), Randn(r, 0, 1, 1, 17, 11, 10)}
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			b := in[2]
			if !bias {
				b = nil
			}
			return o.Conv2dAdd(in[0], in[1], b, 1, [4]int{1, 1, 1, 1}, in[3])
		}, Tol: 1e-4}
	}
	cs = append(cs, convAdd("conv3x3-add-1x13x11x10-to17-bias", true), convAdd("conv3x3-add-1x13x11x10-to17-nobias", false))

	img := func(shape ...int) func(r *rand.Rand) []core.HostTensor {
		return func(r *rand.Rand) []core.HostTensor { return []core.HostTensor{Randn(r, 0, 1, shape...)} }
	}
	cs = append(cs, Case{Name: "upsample2x-2x4x3x5", Inputs: img(2, 4, 3, 5),
		Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.Upsample2x(x) }), Tol: 0})

	// Bicubic: (in, out) per axis, square unless stated.
	for _, s := range [][4]int{{1, 1, 16, 16}, {2, 2, 16, 16}, {3, 3, 4, 4}, {13, 13, 16, 16}, {16, 16, 16, 16},
		{16, 16, 13, 13}, {5, 9, 12, 7}} {
		inH, inW, outH, outW := s[0], s[1], s[2], s[3]
		cs = append(cs, Case{Name: fmt.Sprintf("bicubic-%dx%d-to-%dx%d", inH, inW, outH, outW), Inputs: img(2, 3, inH, inW),
			Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.ResizeBicubic(x, outH, outW) }), Tol: 1e-6})
	}
	// Area: (in, out) square, plus a non-square one.
	for _, s := range [][4]int{{4, 4, 1, 1}, {4, 4, 3, 3}, {16, 16, 13, 13}, {16, 16, 10, 10}, {7, 7, 3, 3}, {3, 3, 7, 7}, {16, 9, 5, 4}} {
		inH, inW, outH, outW := s[0], s[1], s[2], s[3]
		cs = append(cs, Case{Name: fmt.Sprintf("area-%dx%d-to-%dx%d", inH, inW, outH, outW), Inputs: img(2, 3, inH, inW),
			Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.ResizeArea(x, outH, outW) }), Tol: 1e-6})
	}

	cs = append(cs, Case{Name: "embedding-repeated-ids", Inputs: img(11, 37),
		Op: one(func(o *core.Ops, t *core.Tensor) *core.Tensor {
			return o.Embedding(t, []int{3, 0, 10, 3, 3, 7, 0, 10, 5})
		}), Tol: 0})

	nearest := func(b core.Backend, in []*core.Tensor) ([]int, error) { return b.NearestCode(in[0], in[1]) }
	cs = append(cs,
		Case{Name: "nearest-code-33x8-v64", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 33, 8), Randn(r, 0, 1, 64, 8)}
		}, Ints: nearest},
		Case{Name: "nearest-code-ties", Inputs: func(r *rand.Rand) []core.HostTensor {
			// Codebook rows repeat (row v+8 == row v, and rows 3 == 5), and some z rows are codebook rows:
			// exact ties that only the first index may win.
			e := Randn(r, 0, 1, 24, 8)
			copy(e.Data[5*8:6*8], e.Data[3*8:4*8])
			copy(e.Data[8*8:], e.Data[:16*8])
			z := Randn(r, 0, 1, 20, 8)
			for i, v := range []int{3, 5, 12, 0, 19} {
				copy(z.Data[i*8:(i+1)*8], e.Data[v*8:(v+1)*8])
			}
			return []core.HostTensor{z, e}
		}, Ints: nearest},
		Case{Name: "nearest-code-300x32-v1000", Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 300, 32), Randn(r, 0, 1, 1000, 32)}
		}, Ints: nearest},
	)

	cs = append(cs, Case{Name: "slicelast-3x5x70-off13-n29", Inputs: img(3, 5, 70),
		Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.SliceLast(x, 13, 29) }), Tol: 0})
	for _, axis := range []int{0, 1, 2, -1} {
		cs = append(cs, Case{Name: fmt.Sprintf("concat-axis%d-3-inputs", axis), Inputs: func(r *rand.Rand) []core.HostTensor {
			shape := func(i int) []int {
				s := []int{3, 5, 7}
				a := (axis + 3) % 3
				s[a] += 2 * i // 3 inputs of different lengths along the axis
				return s
			}
			return []core.HostTensor{Randn(r, 0, 1, shape(0)...), Randn(r, 0, 1, shape(1)...), Randn(r, 0, 1, shape(2)...)}
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor { return o.Concat(axis, in...) }, Tol: 0})
	}
	cs = append(cs, Case{Name: "transpose12-3x17x33", Inputs: img(3, 17, 33),
		Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor { return o.Transpose12(x) }), Tol: 0})
	// Zeros after freeing a tensor of the same size: a pooling backend hands out its buffer again, which
	// must not show through.
	cs = append(cs, Case{Name: "zeros-3x17x33-after-free", Inputs: img(3, 17, 33),
		Op: one(func(o *core.Ops, x *core.Tensor) *core.Tensor {
			o.Free(o.Add(x, x))
			return o.Zeros(3, 17, 33)
		}), Tol: 0})
	// Rows [off, off+n) of every batch element of dst replaced in place, the rest kept.
	writeRows := func(off, n int) Case {
		return Case{Name: fmt.Sprintf("writerows-3x11x37-off%d-n%d", off, n), Inputs: func(r *rand.Rand) []core.HostTensor {
			return []core.HostTensor{Randn(r, 0, 1, 3, 11, 37), Randn(r, 0, 1, 3, n, 37)}
		}, Op: func(o *core.Ops, in []*core.Tensor) *core.Tensor {
			o.WriteRows(in[0], in[1], off)
			return in[0]
		}, Tol: 0}
	}
	cs = append(cs, writeRows(0, 4), writeRows(5, 6), writeRows(11, 0))
	return cs
}
