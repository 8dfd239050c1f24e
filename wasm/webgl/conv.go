//go:build js

package webgl

import (
	"errors"
	"fmt"

	gl "github.com/mokiat/wasmgl"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
)

var _ cpu.ConvOffload = (*Offload)(nil)

// convFragmentSrc computes four output channels of one output pixel per fragment. Layouts (c4 = a group of
// four channels in one RGBA texel, zero padded past the channel count):
//
//	x:  texel (w + W*c4, h + H*b)             = x[b, 4c4..4c4+3, h, w]
//	wt: texel (c4 + Ci4*(u*kw + v), o)        = w[o, 4c4..4c4+3, u, v]
//	y:  fragment (wo + Wo*o4, ho + Ho*b)      = y[b, 4o4..4o4+3, ho, wo]
const convFragmentSrc = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
uniform sampler2D x_;
uniform sampler2D w_;
uniform ivec4 in_;    // W, H, Ci4, stride
uniform ivec4 out_;   // Wo, Ho, kh, kw
uniform ivec2 pad_;   // top, left
out vec4 y;
void main() {
	int W = in_.x, H = in_.y, Ci4 = in_.z, s = in_.w;
	int Wo = out_.x, Ho = out_.y, kh = out_.z, kw = out_.w;
	int fx = int(gl_FragCoord.x), fy = int(gl_FragCoord.y);
	int wo = fx % Wo, o = (fx / Wo) * 4;
	int ho = fy % Ho, b = fy / Ho;
	vec4 acc = vec4(0.0);
	for (int u = 0; u < kh; u++) {
		int h = ho * s - pad_.x + u;
		if (h < 0 || h >= H) continue;
		for (int v = 0; v < kw; v++) {
			int w = wo * s - pad_.y + v;
			if (w < 0 || w >= W) continue;
			int wx = Ci4 * (u * kw + v);
			for (int c4 = 0; c4 < Ci4; c4++) {
				vec4 xv = texelFetch(x_, ivec2(w + W * c4, h + H * b), 0);
				acc.x += dot(xv, texelFetch(w_, ivec2(wx + c4, o), 0));
				acc.y += dot(xv, texelFetch(w_, ivec2(wx + c4, o + 1), 0));
				acc.z += dot(xv, texelFetch(w_, ivec2(wx + c4, o + 2), 0));
				acc.w += dot(xv, texelFetch(w_, ivec2(wx + c4, o + 3), 0));
			}
		}
	}
	y = acc;
}`

// convProgram is the convolution shader and its uniforms.
type convProgram struct {
	xwProgram
	locIn, locOut, locPd gl.UniformLocation
}

func newConvProgram() (*convProgram, error) {
	xw, err := newXWProgram(convFragmentSrc, "x_", "w_")
	if err != nil {
		return nil, err
	}
	p := xw.prog
	return &convProgram{xwProgram: xw,
		locIn: gl.GetUniformLocation(p, "in_"), locOut: gl.GetUniformLocation(p, "out_"),
		locPd: gl.GetUniformLocation(p, "pad_")}, nil
}

// Conv2d implements cpu.ConvOffload.
func (o *Offload) Conv2d(w *core.Tensor, w_OCUV []float32, x_BCHW []float32, g cpu.ConvGeom, y_BOP []float32) (done bool, err error) {
	Ci4, Co4 := (g.Ci+3)/4, (g.Co+3)/4
	if g.B*g.Co*g.Ho*g.Wo*g.Ci*g.KH*g.KW < MinMACs || g.W*Ci4 > o.maxTex || g.H*g.B > o.maxTex ||
		g.Wo*Co4 > o.maxTex || g.Ho*g.B > o.maxTex || Ci4*g.KH*g.KW > o.maxTex || Co4*4 > o.maxTex {
		return false, nil
	}
	if *o.lost {
		return false, errLost
	}
	defer recoverGL(&done, &err)
	cp := o.conv
	wt, err := o.weightFor(w, g.Co, g.Ci*g.KH*g.KW, func() (weightTex, error) { return o.uploadConvWeight(w_OCUV, g) })
	if err != nil {
		return false, err
	}

	// x, repacked to the texel layout above.
	xw, xh := g.W*Ci4, g.H*g.B
	o.xbuf = grow(o.xbuf, xw*xh*4)
	xs := o.xbuf[:xw*xh*4]
	clear(xs)
	for b := range g.B {
		for c := range g.Ci {
			c4, lane := c/4, c%4
			for h := range g.H {
				src := x_BCHW[((b*g.Ci+c)*g.H+h)*g.W : ((b*g.Ci+c)*g.H+h+1)*g.W]
				row := ((b*g.H+h)*xw + c4*g.W) * 4
				for w, v := range src {
					xs[row+w*4+lane] = v
				}
			}
		}
	}
	yw, yh := g.Wo*Co4, g.Ho*g.B
	ys, err := o.renderXW(cp.xwProgram, xs, xw, xh, wt.tex, yw, yh, func() {
		gl.Uniform4i(cp.locIn, int32(g.W), int32(g.H), int32(Ci4), int32(g.Stride))
		gl.Uniform4i(cp.locOut, int32(g.Wo), int32(g.Ho), int32(g.KH), int32(g.KW))
		gl.Uniform2i(cp.locPd, int32(g.Top), int32(g.Left))
	})
	if err != nil {
		return false, fmt.Errorf("%w in a conv of x [%d, %d, %d, %d] to %d channels", err, g.B, g.Ci, g.H, g.W, g.Co)
	}
	P := g.Ho * g.Wo
	for b := range g.B {
		for ho := range g.Ho {
			row := ys[((b*g.Ho+ho)*yw)*4:]
			for oc := range g.Co {
				o4, lane := oc/4, oc%4
				dst := y_BOP[(b*g.Co+oc)*P+ho*g.Wo : (b*g.Co+oc)*P+(ho+1)*g.Wo]
				for wo := range dst {
					dst[wo] = row[(o4*g.Wo+wo)*4+lane]
				}
			}
		}
	}
	return true, nil
}

// uploadConvWeight makes w [Co, Ci, kh, kw]'s texture in the layout of convFragmentSrc.
func (o *Offload) uploadConvWeight(w_OCUV []float32, g cpu.ConvGeom) (weightTex, error) {
	K := g.Ci * g.KH * g.KW
	if len(w_OCUV) != g.Co*K {
		return weightTex{}, errors.New("conv weight size does not match its shape")
	}
	Ci4, Co4 := (g.Ci+3)/4, (g.Co+3)/4
	tw, th := Ci4*g.KH*g.KW, Co4*4
	p := make([]float32, tw*th*4)
	for oc := range g.Co {
		for c := range g.Ci {
			for u := range g.KH {
				for v := range g.KW {
					p[(oc*tw+Ci4*(u*g.KW+v)+c/4)*4+c%4] = w_OCUV[((oc*g.Ci+c)*g.KH+u)*g.KW+v]
				}
			}
		}
	}
	t := texture(gl.RGBA32F, tw, th)
	gl.TexSubImage2D(gl.TEXTURE_2D, 0, 0, 0, int32(tw), int32(th), gl.RGBA, gl.FLOAT, f32bytes(p))
	return weightTex{tex: t, M: g.Co, K: K, bytes: len(p) * 4}, o.check("uploading a conv weight")
}
