// Conv2d as a tiled implicit GEMM. Per image, out[o, q] = sum over (c, u, v) of w[o, c, u, v] *
// x[c, iy(q, u), ix(q, v)] (+ bias[o]) is a [Co, K] x [K, P] matrix product with P = Ho*Wo output pixels and
// K = Ci*kh*kw, whose right-hand matrix (the im2col patches) is gathered from x on the fly, zero outside the
// image, and never stored.
//
// A workgroup of {{.WG}} invocations computes a BM x BN block of out (BM channels x BN pixels); invocation
// (ty, tx) owns TM channels (a multiple of 4) x 4 consecutive pixels, in vec4 accumulators. The K loop
// runs over the kh*kw kernel offsets and, inside, over channel slices of BK: each step stages a BK x BM
// slice of w and a BK x BN slice of patches in workgroup memory, then every invocation does TM*4*BK
// multiply-adds from it, reading both slices as vec4s.
// Walking K by (u, v) first means an invocation's input offset and padding test change once per (u, v)
// rather than being decoded from a flat k with integer divisions per element; the summation order
// therefore differs from the CPU's (c, u, v) order, within the conv tolerance.
//
// Grid: x = pixel blocks, y = channel blocks, z = image.
struct P {
  ci: u32,
  h: u32,
  w: u32,
  co: u32,
  wo: u32,
  np: u32,      // Ho * Wo
  kh: u32,
  kw: u32,
  stride: u32,
  top: u32,
  left: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
{{- if .Bias}}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
{{- else}}
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
{{- end}}

const WG = {{.WG}}u;
const BM = {{.BM}}u;       // output channels per workgroup
const BN = {{.BN}}u;       // output pixels per workgroup
const BK = {{.BK}}u;       // input channels per step
const TM = {{.TM}}u;       // output channels per invocation (x 4 pixels)
const TX = BN / 4u;        // invocations along pixels
const ALOADS = BK * BM / WG;
const BLOADS = BK * BN / WG;

const WS = BK * BM / 4u;
const XS = BK * BN / 4u;
// Both slices are stored as vec4s (4 consecutive channels, 4 consecutive pixels), so the inner loop
// reads workgroup memory 16 bytes at a time.
var<workgroup> wS: array<vec4<f32>, WS>;  // [BK][BM]
var<workgroup> xS: array<vec4<f32>, XS>;  // [BK][BN]

@compute @workgroup_size({{.WG}})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let q0 = wid.x * BN;
  let o0 = wid.y * BM;
  let hw = p.h * p.w;
  let xb = wid.z * p.ci * hw;
  let kk = p.kh * p.kw;

  // Patch loader: this invocation always loads pixel q0 + ln, for channels lk, lk + WG/BN, ...
  let ln = lid % BN;
  let lk = lid / BN;
  let q = q0 + ln;
  let qok = q < p.np;
  let oy = q / p.wo;
  let ox = q - oy * p.wo;
  let iyb = i32(oy * p.stride) - i32(p.top);
  let ixb = i32(ox * p.stride) - i32(p.left);

  // Compute: channels o0 + ty*TM .. +TM, pixels q0 + tx*4 .. +4.
  let tx = lid % TX;
  let ty = lid / TX;
  var acc: array<vec4<f32>, TM>;

  for (var u = 0u; u < p.kh; u++) {
    let iy = iyb + i32(u);
    for (var v = 0u; v < p.kw; v++) {
      let ix = ixb + i32(v);
      let inside = qok && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
      let xo = xb + select(0u, u32(iy) * p.w + u32(ix), inside);
      let uv = u * p.kw + v;
      for (var c0 = 0u; c0 < p.ci; c0 += BK) {
        // w slice: element e = (m, k) with k fastest, so neighbouring invocations read neighbouring c.
        for (var r = 0u; r < ALOADS; r++) {
          let e = lid + r * WG;
          let m = e / BK;
          let k = e % BK;
          let o = o0 + m;
          let c = c0 + k;
          var a = 0.0;
          if (o < p.co && c < p.ci) {
            a = wt[(o * p.ci + c) * kk + uv];
          }
          wS[(k * BM + m) / 4u][m % 4u] = a;
        }
        // patch slice: neighbouring invocations read neighbouring pixels.
        for (var r = 0u; r < BLOADS; r++) {
          let k = lk + r * (WG / BN);
          let c = c0 + k;
          var b = 0.0;
          if (inside && c < p.ci) {
            b = x[xo + c * hw];
          }
          xS[(k * BN + ln) / 4u][ln % 4u] = b;
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
          let b = xS[k * TX + tx];
          for (var i = 0u; i < TM / 4u; i++) {
            let a = wS[(k * BM + ty * TM) / 4u + i];
            acc[4u * i] += a.x * b;
            acc[4u * i + 1u] += a.y * b;
            acc[4u * i + 2u] += a.z * b;
            acc[4u * i + 3u] += a.w * b;
          }
        }
        workgroupBarrier();
      }
    }
  }

  for (var i = 0u; i < TM; i++) {
    let o = o0 + ty * TM + i;
    if (o >= p.co) { break; }
{{- if .Bias}}
    let r = acc[i] + bias[o];
{{- else}}
    let r = acc[i];
{{- end}}
    let ob = (wid.z * p.co + o) * p.np;
    for (var j = 0u; j < 4u; j++) {
      let qq = q0 + tx * 4u + j;
      if (qq < p.np) {
        out[ob + qq] = r[j];
      }
    }
  }
}
