package cpu

import (
	"fmt"

	"github.com/webvar/webvar/core"
)

// convChunkFloats bounds the im2col scratch buffer of Conv2d (4 MiB): the patch matrix of a whole 256x256
// feature map would take hundreds of MiB, so Conv2d builds it a chunk of output pixels at a time.
const convChunkFloats = 1 << 20

// Conv2d is a 2-D cross-correlation (PyTorch nn.Conv2d with dilation 1 and groups 1): x [B, Ci, H, W],
// w [Co, Ci, kh, kw], b [Co] or nil, stride s >= 1 and zero padding pad = {top, left, bottom, right};
// out [B, Co, Ho, Wo] with Ho = (H + top + bottom - kh)/s + 1 and Wo = (W + left + right - kw)/s + 1:
//
//	out[b, o, i, j] = (sum over c, u, v of w[o, c, u, v] * x[b, c, i*s - top + u, j*s - left + v]) + b[o]
//
// where x is zero outside [0, H) x [0, W). The sum is one float32 accumulator over (c, u, v) in row-major
// order of w; the bias is added last.
//
// Implementation: im2col. For a chunk of output pixels, row p of the patch matrix holds the Ci*kh*kw input
// values that pixel p sees, in the same order as a row of w; the outputs are then the dot products of w's
// rows with the patch rows, which gemmNT computes straight into the [Co, Ho*Wo] layout of the output.
func (be *Backend) Conv2d(x, w, b *core.Tensor, stride int, pad [4]int) (*core.Tensor, error) {
	return be.conv2d("conv2d", x, w, b, stride, pad, nil)
}

var _ core.FusedConv2dAdd = (*Backend)(nil)

// Conv2dAdd is res + Conv2d(x, w, b, stride, pad) for res of the output's shape (the residual connections
// of the VAE's blocks): each output is Conv2d's value, bias added last, plus res, rounded as the two ops
// round (bit for bit Add(res, Conv2d(...))). New's backend adds the bias and res while each block of
// output columns is still in cache after its product, instead of in two more passes over the output and
// a second output tensor.
func (be *Backend) Conv2dAdd(x, w, b *core.Tensor, stride int, pad [4]int, res *core.Tensor) (*core.Tensor, error) {
	if res == nil {
		return nil, fmt.Errorf("conv2d+add: res is nil")
	}
	return be.conv2d("conv2d+add", x, w, b, stride, pad, res)
}

// conv2d is Conv2d, plus res when res is not nil (Conv2dAdd).
func (be *Backend) conv2d(op string, x, w, b *core.Tensor, stride int, pad [4]int, res *core.Tensor) (*core.Tensor, error) {
	x_BCHW, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	w_OCUV, err := floats(op, "w", w)
	if err != nil {
		return nil, err
	}
	xs, ws := x.Shape(), w.Shape()
	if len(xs) != 4 || len(ws) != 4 || ws[1] != xs[1] {
		return nil, shapeError(op, "want x [B, Ci, H, W] and w [Co, Ci, kh, kw], got x %v and w %v", xs, ws)
	}
	B, Ci, H, W := xs[0], xs[1], xs[2], xs[3]
	Co, kh, kw := ws[0], ws[2], ws[3]
	top, left, bottom, right := pad[0], pad[1], pad[2], pad[3]
	if stride < 1 {
		return nil, shapeError(op, "stride %d, want >= 1", stride)
	}
	if top < 0 || left < 0 || bottom < 0 || right < 0 {
		return nil, shapeError(op, "padding %v has a negative entry", pad)
	}
	if Ci == 0 || Co == 0 || kh == 0 || kw == 0 || H+top+bottom < kh || W+left+right < kw {
		return nil, shapeError(op, "kernel %v does not fit x %v padded by %v", ws, xs, pad)
	}
	var b_O []float32
	if b != nil {
		if b_O, err = floats(op, "b", b); err != nil {
			return nil, err
		}
		if !b.Shape().Equal(core.Shape{Co}) {
			return nil, shapeError(op, "b %v, want [%d] for w %v", b.Shape(), Co, ws)
		}
	}
	Ho := (H+top+bottom-kh)/stride + 1
	Wo := (W+left+right-kw)/stride + 1
	P, Kc := Ho*Wo, Ci*kh*kw // output pixels per image, values per patch
	var res_BOP []float32
	if res != nil {
		if res_BOP, err = floats(op, "res", res); err != nil {
			return nil, err
		}
		if !res.Shape().Equal(core.Shape{B, Co, Ho, Wo}) {
			return nil, shapeError(op, "res %v, want the output's shape [%d, %d, %d, %d]", res.Shape(), B, Co, Ho, Wo)
		}
	}

	out, out_BOP := newTensor(B, Co, Ho, Wo)
	done := false
	if co, ok := be.offload.(ConvOffload); ok {
		g := ConvGeom{B: B, Ci: Ci, H: H, W: W, Co: Co, KH: kh, KW: kw, Stride: stride, Top: top, Left: left, Ho: Ho, Wo: Wo}
		if done, err = co.Conv2d(w, w_OCUV, x_BCHW, g, out_BOP); err != nil {
			return nil, fmt.Errorf("%s on %s: %w", op, co.Name(), err)
		}
	}
	switch {
	case done:
		// The sums came from the offload; the bias and res are added below.
	case be.kernel != nil:
		// Packed path (gemm.go): B is the patch matrix, packed straight from x (bIm2col); bias and res are
		// added per block of columns as soon as the block's sums are done.
		for bi := range B {
			patches := bIm2col{x_CHW: x_BCHW[bi*Ci*H*W : (bi+1)*Ci*H*W], H: H, W: W, kh: kh, kw: kw,
				stride: stride, top: top, left: left, Wo: Wo}
			out_OP := out_BOP[bi*Co*P : (bi+1)*Co*P]
			var res_OP []float32
			if res != nil {
				res_OP = res_BOP[bi*Co*P : (bi+1)*Co*P]
			}
			var post func(j0, j1 int)
			if b_O != nil || res_OP != nil {
				post = func(j0, j1 int) { biasResidual(out_OP, b_O, res_OP, P, j0, j1) }
			}
			be.gemmPacked(be.kernel, true, w_OCUV, Kc, Co, patches, P, Kc, out_OP, P, post)
		}
		return out, nil
	default:
		be.conv2dRef(x_BCHW, w_OCUV, out_BOP, B, Ci, H, W, Co, kh, kw, stride, top, left, Ho, Wo)
	}
	if b_O != nil {
		be.parallelFor(B*Co, func(r0, r1 int) {
			for r := r0; r < r1; r++ {
				bias := b_O[r%Co]
				plane := out_BOP[r*P : (r+1)*P]
				for p := range plane {
					plane[p] += bias
				}
			}
		})
	}
	if res != nil {
		be.parallelElems(len(out_BOP), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				out_BOP[i] = res_BOP[i] + out_BOP[i] // Add(res, conv)
			}
		})
	}
	return out, nil
}

// biasResidual adds bias b_O[o] (when b_O is not nil) and then res_OP (when not nil) to columns [j0, j1) of
// every row o of out_OP [Co, P]: the same two roundings as Conv2d's bias followed by Add.
func biasResidual(out_OP, b_O, res_OP []float32, P, j0, j1 int) {
	for o := range len(out_OP) / P {
		row := out_OP[o*P+j0 : o*P+j1]
		switch {
		case res_OP == nil:
			bias := b_O[o]
			for j := range row {
				row[j] += bias
			}
		case b_O == nil:
			r := res_OP[o*P+j0 : o*P+j1]
			for j := range row {
				row[j] += r[j]
			}
		default:
			bias, r := b_O[o], res_OP[o*P+j0:o*P+j1]
			for j := range row {
				row[j] = (row[j] + bias) + r[j]
			}
		}
	}
}

// conv2dRef is Conv2d's reference product through an explicit im2col buffer and gemmNTRef.
func (be *Backend) conv2dRef(x_BCHW, w_OCUV, out_BOP []float32, B, Ci, H, W, Co, kh, kw, stride, top, left, Ho, Wo int) {
	P, Kc := Ho*Wo, Ci*kh*kw
	chunk := min(P, max(1, convChunkFloats/Kc)) // output pixels per im2col chunk
	cols := make([]float32, chunk*Kc)
	for bi := range B {
		x_CHW := x_BCHW[bi*Ci*H*W : (bi+1)*Ci*H*W]
		out_OP := out_BOP[bi*Co*P : (bi+1)*Co*P]
		for p0 := 0; p0 < P; p0 += chunk {
			pc := min(chunk, P-p0)
			patches := cols[:pc*Kc]
			be.parallelFor(pc, func(q0, q1 int) {
				for q := q0; q < q1; q++ {
					oy, ox := (p0+q)/Wo, (p0+q)%Wo
					row := patches[q*Kc : (q+1)*Kc]
					k := 0
					for c := range Ci {
						for u := range kh {
							iy := oy*stride - top + u
							for v := range kw {
								ix := ox*stride - left + v
								if iy >= 0 && iy < H && ix >= 0 && ix < W {
									row[k] = x_CHW[(c*H+iy)*W+ix]
								} else {
									row[k] = 0
								}
								k++
							}
						}
					}
				}
			})
			be.gemmNTRef(w_OCUV, Co, patches, pc, Kc, out_OP[p0:], P)
		}
	}
}

// bIm2col is the patch matrix of one image x [Ci, H, W] as the B operand of a packed product (implicit
// im2col): B[p, k] is the input value output pixel p = oy*Wo + ox sees at k = (c*kh + u)*kw + v, that is
// x[c, oy*stride - top + u, ox*stride - left + v], zero outside the image.
type bIm2col struct {
	x_CHW                 []float32
	H, W, kh, kw          int
	stride, top, left, Wo int
}

// packBlock implements blockPacker: the panels of columns [j0, j1) for k0..k1, panel (jp-j0)/gemmNR at
// bPack[(jp-j0)*(k1-k0):]. Consecutive whole stride-1 panels on one output row are packed together,
// k-row outermost (packRuns), so that each row of x is read left to right once per k row across all
// of them, which the hardware prefetchers follow; panel by panel, each panel's k rows are scattered over
// Ci planes and a dozen x rows, one cache line each, and the packing waited on memory.
func (b bIm2col) packBlock(bPack []float32, j0, j1, k0, k1 int) {
	kc := k1 - k0
	for jp := j0; jp < j1; {
		rows := min(gemmNR, j1-jp)
		oy, ox := jp/b.Wo, jp%b.Wo
		if b.stride != 1 || rows < gemmNR || ox+gemmNR > b.Wo {
			b.packPanel(bPack[(jp-j0)*kc:(jp-j0+gemmNR)*kc], jp, rows, k0, k1)
			jp += gemmNR
			continue
		}
		np := 1 // whole panels from jp on, on output row oy
		for jp+(np+1)*gemmNR <= j1 && ox+(np+1)*gemmNR <= b.Wo {
			np++
		}
		b.packRuns(bPack[(jp-j0)*kc:(jp-j0+np*gemmNR)*kc], kc, np, oy-b.top, ox-b.left, k0, k1)
		jp += np * gemmNR
	}
}

// packRuns packs np whole stride-1 panels of consecutive pixels on one output row, panel q at
// dst[q*kc*gemmNR:]: row k = (c, u, v) of panel q is x[c, iy0+u, ix0+v+q*gemmNR :+gemmNR], zero outside
// the image.
func (b bIm2col) packRuns(dst []float32, kc, np, iy0, ix0, k0, k1 int) {
	H, W := b.H, b.W
	c, u, v := k0/(b.kh*b.kw), k0/b.kw%b.kh, k0%b.kw
	for k := range k1 - k0 {
		iy, ix := iy0+u, ix0+v
		if iy < 0 || iy >= H {
			for q := range np {
				clear(dst[q*kc*gemmNR+k*gemmNR : q*kc*gemmNR+(k+1)*gemmNR])
			}
		} else {
			row := b.x_CHW[(c*H+iy)*W : (c*H+iy+1)*W]
			for q := range np {
				d := (*[gemmNR]float32)(dst[q*kc*gemmNR+k*gemmNR : q*kc*gemmNR+(k+1)*gemmNR])
				if s := ix + q*gemmNR; s >= 0 && s+gemmNR <= W {
					copy16(d, (*[gemmNR]float32)(row[s:s+gemmNR]))
				} else {
					*d = [gemmNR]float32{}
					if lo, hi := max(s, 0), min(s+gemmNR, W); lo < hi { // the part of the run inside the image
						copy(d[lo-s:hi-s], row[lo:hi])
					}
				}
			}
		}
		if v++; v == b.kw {
			if v, u = 0, u+1; u == b.kh {
				u, c = 0, c+1
			}
		}
	}
}

func (b bIm2col) packPanel(panel []float32, j0, rows, k0, k1 int) {
	var iy0, ix0 [gemmNR]int // top-left input coordinate of each pixel's window
	for r := range rows {
		iy0[r] = (j0+r)/b.Wo*b.stride - b.top
		ix0[r] = (j0+r)%b.Wo*b.stride - b.left
	}
	// With stride 1 and all pixels on one output row, each panel row is a contiguous run of x.
	run := b.stride == 1 && iy0[rows-1] == iy0[0]
	c, u, v := k0/(b.kh*b.kw), k0/b.kw%b.kh, k0%b.kw
	for k := range k1 - k0 {
		d := panel[k*gemmNR : (k+1)*gemmNR]
		plane := b.x_CHW[c*b.H*b.W : (c+1)*b.H*b.W]
		if run {
			iy, ix := iy0[0]+u, ix0[0]+v
			clear(d)
			if iy >= 0 && iy < b.H {
				lo, hi := max(ix, 0), min(ix+rows, b.W) // the part of the run inside the image
				if lo < hi {
					copy(d[lo-ix:hi-ix], plane[iy*b.W+lo:iy*b.W+hi])
				}
			}
		} else {
			for r := range gemmNR {
				d[r] = 0
				if r < rows {
					if iy, ix := iy0[r]+u, ix0[r]+v; iy >= 0 && iy < b.H && ix >= 0 && ix < b.W {
						d[r] = plane[iy*b.W+ix]
					}
				}
			}
		}
		if v++; v == b.kw {
			if v, u = 0, u+1; u == b.kh {
				u, c = 0, c+1
			}
		}
	}
}

// copy16 copies 16 floats as four 16-byte moves: a whole-array assignment would call memmove, which costs
// more than the copy itself at this size.
func copy16(d, s *[gemmNR]float32) {
	*(*[4]float32)(d[0:4]) = *(*[4]float32)(s[0:4])
	*(*[4]float32)(d[4:8]) = *(*[4]float32)(s[4:8])
	*(*[4]float32)(d[8:12]) = *(*[4]float32)(s[8:12])
	*(*[4]float32)(d[12:16]) = *(*[4]float32)(s[12:16])
}

// Upsample2x is nearest-neighbour 2x upsampling (F.interpolate(scale_factor=2, mode='nearest')):
// x [B, C, H, W] -> y [B, C, 2H, 2W], y[b, c, i, j] = x[b, c, i/2, j/2].
func (be *Backend) Upsample2x(x *core.Tensor) (*core.Tensor, error) {
	const op = "upsample2x"
	x_BCHW, err := floats(op, "x", x)
	if err != nil {
		return nil, err
	}
	xs := x.Shape()
	if len(xs) != 4 {
		return nil, shapeError(op, "want x [B, C, H, W], got %v", xs)
	}
	H, W := xs[2], xs[3]
	y, y_BCHW := newTensor(xs[0], xs[1], 2*H, 2*W)
	// One work item is one output row (plane, i).
	be.parallelFor(xs[0]*xs[1]*2*H, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			plane, i := r/(2*H), r%(2*H)
			src := x_BCHW[(plane*H+i/2)*W:][:W]
			dst := y_BCHW[r*2*W : (r+1)*2*W]
			for j := range dst {
				dst[j] = src[j/2]
			}
		}
	})
	return y, nil
}
