//go:build js

// Package webgl runs the CPU backend's matrix products (Linear) and convolutions (Conv2d) on the
// browser's WebGL2, for browsers without WebGPU: fragment shaders compute them into float render targets
// (four outputs per fragment), and the result is read back for the CPU ops that follow. Weights are
// uploaded once per tensor and kept as textures (float32 for float weights; float16 for quantized weights,
// whose 8- or 4-bit codes carry less precision than that). Attention, normalisation, upsampling and
// sampling stay on the CPU, as do products too small to be worth the round trip or beyond the texture
// size limit.
//
// It uses github.com/mokiat/wasmgl, which holds one WebGL2 context per wasm instance: Open once per
// page (a second Open replaces the context the first Offload's textures and program live in).
package webgl

import (
	"errors"
	"fmt"
	"syscall/js"
	"unsafe"

	gl "github.com/mokiat/wasmgl"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
)

// ErrUnavailable is returned by Open when the browser has no usable WebGL2 (no context, no float render
// targets).
var ErrUnavailable = errors.New("webgl: WebGL2 with float render targets unavailable")

// MinMACs is the size (N*M*K multiply-adds) below which a product stays on the CPU: the upload, draw and
// read-back cost more than the work.
const MinMACs = 1 << 16

// errLost is the error after the browser's webglcontextlost event.
var errLost = errors.New("the WebGL2 context was lost (the GPU was reset or the browser reclaimed it): reload the page")

// Offload is a cpu.Offload (and cpu.ConvOffload) on one WebGL2 context.
type Offload struct {
	renderer string
	maxTex   int
	product  xwProgram // the matrix product's shader
	locK4    gl.UniformLocation
	vao      gl.VertexArray
	fbo      gl.Framebuffer
	pbo      gl.Buffer
	pboBytes int
	lost     *bool // set by the context-lost event
	weights  map[*core.Tensor]weightTex
	conv     *convProgram
	// scratch for padded uploads and read-backs
	xbuf, ybuf []float32
}

// weightTex is a weight's texture: K4 RGBA texels per row (4 consecutive k), M4*4 rows (zero padded).
type weightTex struct {
	tex   gl.Texture
	M, K  int
	bytes int
}

var _ cpu.Offload = (*Offload)(nil)

const vertexSrc = `#version 300 es
// One triangle covering the viewport: no vertex buffers.
void main() {
	vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
	gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`

// fragmentSrc computes four outputs per fragment: y[n, 4*m4 .. 4*m4+3] for the fragment at (m4, n).
// x is [N rows, K4 texels], w is [M4*4 rows, K4 texels]; both are zero padded past K, so the padded
// lanes add nothing.
const fragmentSrc = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
uniform sampler2D x_NK;
uniform sampler2D w_MK;
uniform int K4;
out vec4 y;
void main() {
	int m = int(gl_FragCoord.x) * 4;
	int n = int(gl_FragCoord.y);
	vec4 acc = vec4(0.0);
	for (int k = 0; k < K4; k++) {
		vec4 xv = texelFetch(x_NK, ivec2(k, n), 0);
		acc.x += dot(xv, texelFetch(w_MK, ivec2(k, m), 0));
		acc.y += dot(xv, texelFetch(w_MK, ivec2(k, m + 1), 0));
		acc.z += dot(xv, texelFetch(w_MK, ivec2(k, m + 2), 0));
		acc.w += dot(xv, texelFetch(w_MK, ivec2(k, m + 3), 0));
	}
	y = acc;
}`

// Open creates a WebGL2 context on a detached canvas and compiles the product shader. It returns
// ErrUnavailable (wrapped, with the reason) when the browser cannot run it.
func Open() (o *Offload, err error) {
	defer func() {
		// wasmgl calls into JavaScript and panics on a JS exception; turn that into an error.
		if r := recover(); r != nil {
			o, err = nil, fmt.Errorf("%w: %v", ErrUnavailable, r)
		}
	}()
	doc := js.Global().Get("document")
	if !doc.Truthy() {
		return nil, fmt.Errorf("%w: no document", ErrUnavailable)
	}
	canvas := doc.Call("createElement", "canvas")
	canvas.Set("width", 1)
	canvas.Set("height", 1)
	lost := new(bool)
	canvas.Call("addEventListener", "webglcontextlost", js.FuncOf(func(js.Value, []js.Value) any {
		*lost = true
		return nil
	}))
	if err := gl.InitFromCanvas(canvas, gl.WithOptionAntialias(false), gl.WithOptionDepth(false),
		gl.WithOptionStencil(false), gl.WithOptionAlpha(true), gl.WithOptionPowerPreference(gl.PowerPreferenceHighPerformance)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if gl.GetExtension("EXT_color_buffer_float") == nil {
		return nil, fmt.Errorf("%w: no EXT_color_buffer_float (float render targets)", ErrUnavailable)
	}
	o = &Offload{lost: lost, weights: map[*core.Tensor]weightTex{}, renderer: "WebGL2"}
	o.maxTex = int(gl.GetParameter(gl.MAX_TEXTURE_SIZE).GLint())
	if o.maxTex < 1024 {
		return nil, fmt.Errorf("%w: MAX_TEXTURE_SIZE %d", ErrUnavailable, o.maxTex)
	}
	if r := js.Value(gl.GetParameter(gl.RENDERER)); r.Type() == js.TypeString {
		o.renderer = r.String()
	}
	// The real GPU's name where the browser tells it (WEBGL_debug_renderer_info's UNMASKED_RENDERER_WEBGL).
	const unmaskedRenderer = 0x9246
	if gl.GetExtension("WEBGL_debug_renderer_info") != nil {
		if r := js.Value(gl.GetParameter(unmaskedRenderer)); r.Type() == js.TypeString && r.String() != "" {
			o.renderer = r.String()
		}
	}
	if o.product, err = newXWProgram(fragmentSrc, "x_NK", "w_MK"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	o.locK4 = gl.GetUniformLocation(o.product.prog, "K4")
	if o.conv, err = newConvProgram(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	o.vao = gl.CreateVertexArray()
	o.fbo = gl.CreateFramebuffer()
	o.pbo = gl.CreateBuffer()
	if e := gl.GetError(); e != gl.NO_ERROR {
		return nil, fmt.Errorf("%w: setting up: GL error 0x%x", ErrUnavailable, e)
	}
	return o, nil
}

func program(vs, fs string) (gl.Program, error) {
	compile := func(kind gl.GLenum, src string) (gl.Shader, error) {
		s := gl.CreateShader(kind)
		gl.ShaderSource(s, src)
		gl.CompileShader(s)
		if !gl.GetShaderParameter(s, gl.COMPILE_STATUS).GLboolean() {
			return s, fmt.Errorf("compiling a shader: %s", gl.GetShaderInfoLog(s))
		}
		return s, nil
	}
	v, err := compile(gl.VERTEX_SHADER, vs)
	if err != nil {
		return gl.NilProgram, err
	}
	f, err := compile(gl.FRAGMENT_SHADER, fs)
	if err != nil {
		return gl.NilProgram, err
	}
	p := gl.CreateProgram()
	gl.AttachShader(p, v)
	gl.AttachShader(p, f)
	gl.LinkProgram(p)
	if !gl.GetProgramParameter(p, gl.LINK_STATUS).GLboolean() {
		return gl.NilProgram, fmt.Errorf("linking the program: %s", gl.GetProgramInfoLog(p))
	}
	return p, nil
}

// Name implements cpu.Offload.
func (o *Offload) Name() string { return "webgl2" }

// Renderer is the GPU as WebGL names it (often masked by the browser, e.g. "WebKit WebGL").
func (o *Offload) Renderer() string { return o.renderer }

// WeightBytes is the texture memory the weights uploaded so far take.
func (o *Offload) WeightBytes() int64 {
	var n int64
	for _, w := range o.weights {
		n += int64(w.bytes)
	}
	return n
}

// LinearNT implements cpu.Offload.
func (o *Offload) LinearNT(w *core.Tensor, weight func() ([]float32, bool, error), x_NK []float32, N, M, K int, y_NM []float32) (done bool, err error) {
	K4, M4 := (K+3)/4, (M+3)/4
	if N*M*K < MinMACs || K4 > o.maxTex || M4*4 > o.maxTex || N > o.maxTex {
		return false, nil
	}
	if *o.lost {
		return false, errLost
	}
	defer recoverGL(&done, &err)
	wt, err := o.weightFor(w, M, K, func() (weightTex, error) { return o.uploadWeight(weight, M, K) })
	if err != nil {
		return false, err
	}

	// x: N rows of K4 texels, zero padded past K.
	xs := x_NK
	if K4*4 != K {
		o.xbuf = grow(o.xbuf, N*K4*4)
		clear(o.xbuf)
		for n := range N {
			copy(o.xbuf[n*K4*4:n*K4*4+K], x_NK[n*K:(n+1)*K])
		}
		xs = o.xbuf[:N*K4*4]
	}
	ys, err := o.renderXW(o.product, xs, K4, N, wt.tex, M4, N, func() {
		gl.Uniform1i(o.locK4, int32(K4))
	})
	if err != nil {
		return false, fmt.Errorf("%w in a [%d x %d x %d] product", err, N, M, K)
	}
	if M4*4 == M {
		copy(y_NM, ys)
		return true, nil
	}
	for n := range N {
		copy(y_NM[n*M:(n+1)*M], ys[n*M4*4:n*M4*4+M])
	}
	return true, nil
}

// xwProgram is a shader that reads an input texture x (texture unit 0) and a weight texture w (unit 1).
type xwProgram struct {
	prog       gl.Program
	locX, locW gl.UniformLocation
}

// newXWProgram compiles the full-screen vertex shader with fragment and looks up its x and w samplers.
func newXWProgram(fragment, x, w string) (xwProgram, error) {
	p, err := program(vertexSrc, fragment)
	if err != nil {
		return xwProgram{}, err
	}
	return xwProgram{prog: p, locX: gl.GetUniformLocation(p, x), locW: gl.GetUniformLocation(p, w)}, nil
}

// renderXW uploads xs as an xw x xh RGBA32F texture and renders p into a yw x yh target (render) with it
// on unit 0 and the weight texture w on unit 1; uniforms sets the program's other uniforms.
func (o *Offload) renderXW(p xwProgram, xs []float32, xw, xh int, w gl.Texture, yw, yh int, uniforms func()) ([]float32, error) {
	xt := texture(gl.RGBA32F, xw, xh)
	defer gl.DeleteTexture(xt)
	gl.TexSubImage2D(gl.TEXTURE_2D, 0, 0, 0, int32(xw), int32(xh), gl.RGBA, gl.FLOAT, f32bytes(xs))
	return o.render(yw, yh, func() {
		gl.UseProgram(p.prog)
		gl.ActiveTexture(gl.TEXTURE0)
		gl.BindTexture(gl.TEXTURE_2D, xt)
		gl.Uniform1i(p.locX, 0)
		gl.ActiveTexture(gl.TEXTURE1)
		gl.BindTexture(gl.TEXTURE_2D, w)
		gl.Uniform1i(p.locW, 1)
		uniforms()
	})
}

// render draws the full-screen triangle into a w x h RGBA32F target with the program and textures that
// setup binds, and returns the target's values (w*4 floats per row, rows in order; valid until the next
// render).
func (o *Offload) render(w, h int, setup func()) ([]float32, error) {
	yt := texture(gl.RGBA32F, w, h)
	defer gl.DeleteTexture(yt)
	gl.BindFramebuffer(gl.FRAMEBUFFER, o.fbo)
	defer gl.BindFramebuffer(gl.FRAMEBUFFER, gl.NilFramebuffer)
	gl.FramebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, yt, 0)
	if st := gl.CheckFramebufferStatus(gl.FRAMEBUFFER); st != gl.FRAMEBUFFER_COMPLETE {
		return nil, fmt.Errorf("WebGL2: the %d x %d float render target is incomplete (0x%x)", w, h, st)
	}
	gl.Viewport(0, 0, int32(w), int32(h))
	setup()
	gl.BindVertexArray(o.vao)
	gl.DrawArrays(gl.TRIANGLES, 0, 3)

	// Read back through a pixel-pack buffer (wasmgl reads pixels only into one).
	nbytes := w * h * 16
	gl.BindBuffer(gl.PIXEL_PACK_BUFFER, o.pbo)
	defer gl.BindBuffer(gl.PIXEL_PACK_BUFFER, gl.NilBuffer)
	if nbytes > o.pboBytes {
		gl.BufferData(gl.PIXEL_PACK_BUFFER, int64(nbytes), nil, gl.STREAM_READ)
		o.pboBytes = nbytes
	}
	gl.ReadPixels(0, 0, int32(w), int32(h), gl.RGBA, gl.FLOAT, 0)
	o.ybuf = grow(o.ybuf, w*h*4)
	gl.GetBufferSubData(gl.PIXEL_PACK_BUFFER, 0, o.ybuf)
	if err := o.check("rendering"); err != nil {
		return nil, err
	}
	if *o.lost {
		return nil, errLost
	}
	return o.ybuf, nil
}

// recoverGL turns a panic from wasmgl (a JavaScript exception) into the op's error.
func recoverGL(done *bool, err *error) {
	if r := recover(); r != nil {
		*done, *err = false, fmt.Errorf("WebGL2: %v", r)
	}
}

// weightFor returns w's texture, made by upload on first use and kept; M and K (rows and values per row)
// check that a kept texture fits this use.
func (o *Offload) weightFor(w *core.Tensor, M, K int, upload func() (weightTex, error)) (weightTex, error) {
	if wt, ok := o.weights[w]; ok {
		if wt.M != M || wt.K != K {
			return weightTex{}, fmt.Errorf("weight texture is [%d, %d], the op wants [%d, %d]", wt.M, wt.K, M, K)
		}
		return wt, nil
	}
	wt, err := upload()
	if err != nil {
		return weightTex{}, err
	}
	o.weights[w] = wt
	return wt, nil
}

// uploadWeight makes w's texture: float32 for a float weight, float16 for a quantized one.
func (o *Offload) uploadWeight(weight func() ([]float32, bool, error), M, K int) (weightTex, error) {
	w_MK, quantized, err := weight()
	if err != nil {
		return weightTex{}, err
	}
	if len(w_MK) != M*K {
		return weightTex{}, fmt.Errorf("weight has %d values, want %d x %d", len(w_MK), M, K)
	}
	K4, M4 := (K+3)/4, (M+3)/4
	rows := M4 * 4
	if quantized {
		h := make([]uint16, rows*K4*4)
		for m := range M {
			for k := range K {
				h[m*K4*4+k], _ = core.F32ToF16(w_MK[m*K+k]) // past the half range: ±Inf, as the shader would
			}
		}
		t := texture(gl.RGBA16F, K4, rows)
		gl.TexSubImage2D(gl.TEXTURE_2D, 0, 0, 0, int32(K4), int32(rows), gl.RGBA, gl.HALF_FLOAT, u16bytes(h))
		return weightTex{tex: t, M: M, K: K, bytes: len(h) * 2}, o.check("uploading a quantized weight")
	}
	p := make([]float32, rows*K4*4)
	for m := range M {
		copy(p[m*K4*4:m*K4*4+K], w_MK[m*K:(m+1)*K])
	}
	t := texture(gl.RGBA32F, K4, rows)
	gl.TexSubImage2D(gl.TEXTURE_2D, 0, 0, 0, int32(K4), int32(rows), gl.RGBA, gl.FLOAT, f32bytes(p))
	return weightTex{tex: t, M: M, K: K, bytes: len(p) * 4}, o.check("uploading a weight")
}

func (o *Offload) check(what string) error {
	switch e := gl.GetError(); e {
	case gl.NO_ERROR:
		return nil
	case gl.OUT_OF_MEMORY:
		return fmt.Errorf("WebGL2 is out of GPU memory %s (%.0f MB of weights uploaded)", what, float64(o.WeightBytes())/1e6)
	default:
		return fmt.Errorf("WebGL2 error 0x%x %s", e, what)
	}
}

// texture allocates a w x h texture of the given sized format, sampled with texelFetch only.
func texture(format gl.GLenum, w, h int) gl.Texture {
	t := gl.CreateTexture()
	gl.BindTexture(gl.TEXTURE_2D, t)
	gl.TexStorage2D(gl.TEXTURE_2D, 1, format, int32(w), int32(h))
	gl.TexParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST)
	gl.TexParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST)
	return t
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func f32bytes(s []float32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4)
}

func u16bytes(s []uint16) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*2)
}
