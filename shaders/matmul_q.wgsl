// Quantized Linear: out[n, m] = sum_k x[n, k] * dq[m, k] (+ bias[m]) for x [N, K] f32 and a quantized
// w [M, K] (core.QuantHost): dq[m, k] = f32(code[m, k]) * scales[m * nb + k / 32]. Codes are p.bits wide
// (8 or 4), packed cpw = 32 / bits to a u32 (int8: byte j of word w is element 4w+j; int4: nibble j, low
// nibble first, is element 8w+j; two's complement), each row padded to whole 32-element blocks: nb =
// ceil(K / 32) scales and wpr = nb * 32 / cpw words per row.
//
// Tiling as in matmul.wgsl: a workgroup of 16 x 16 invocations computes a 64 x 64 block of out, each
// invocation a strided 4 x 4 micro-tile, walking K in slices of TK = 16 staged in workgroup memory (rows
// padded to TK + 1 words against bank conflicts). What differs is the staging of w: the slice of a row is
// wps = TK / cpw whole words (slices are 16-aligned, so they never straddle a word or a scale block), and
// invocation li < 64 * wps reads one word and its row's scale and writes the cpw dequantized floats. So w
// costs 1 byte (int8) or half a byte (int4) per weight in global memory instead of 4, and the inner loop
// is matmul.wgsl's unchanged. x is staged exactly as there.
//
// Bounds: rows beyond M stage zeros. A slice starting below K lies within the row's padded blocks (K <=
// nb * 32 and slices are 16-aligned), so its words exist; the padding codes are zero and the x columns
// beyond K are staged as zero, so padding adds nothing.
//
// Each output is one f32 accumulator over k in increasing order, then + bias, like the CPU reference.
//
// The code width is a uniform rather than a template parameter: it only sets the staging loop's trip
// counts, and one pipeline per bias variant instead of four halves the pipeline compilations (slow in
// browsers).
//
// Variant parameters: .Bias (a bias binding exists).
struct P {
  N: u32,
  M: u32,
  K: u32,
  bits: u32, // code width: 8 or 4
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<f32>;
{{- if .Bias}}
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
{{- else}}
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
{{- end}}

const TILE = 64u;               // output rows and columns per workgroup
const TK = 16u;                 // K slice staged per step (half a scale block)
const LD = TK + 1u;             // row stride of the staged tiles (padded)
const XLOADS = TILE * TK / 256u; // x elements each invocation stages per slice
const STAGED = TILE * LD;       // (this Naga takes only a constant name or literal as an array size)
const BLOCK = 32u;              // weights per scale (core.QuantBlock)

var<workgroup> xs: array<f32, STAGED>; // xs[r * LD + k] = x[n0 + r, k0 + k]
var<workgroup> ws: array<f32, STAGED>; // ws[c * LD + k] = dq[m0 + c, k0 + k]

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let n0 = wid.y * TILE;
  let m0 = wid.x * TILE;
  let cpw = 32u / p.bits;  // codes per u32 word
  let wps = TK / cpw;      // words of one staged row slice
  let wloads = TILE * wps; // words staged per slice: 256 (int8) or 128 (int4), at most one per invocation
  let nb = (p.K + BLOCK - 1u) / BLOCK;
  let wpr = nb * (BLOCK / cpw);
  var acc0 = vec4<f32>();
  var acc1 = vec4<f32>();
  var acc2 = vec4<f32>();
  var acc3 = vec4<f32>();

  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    for (var e = 0u; e < XLOADS; e++) {
      let idx = li + e * 256u;
      let r = idx / TK;
      let k = idx % TK;
      let gk = k0 + k;
      var xv = 0.0;
      if (n0 + r < p.N && gk < p.K) {
        xv = x[(n0 + r) * p.K + gk];
      }
      xs[r * LD + k] = xv;
    }
    if (li < wloads) {
      let r = li / wps;
      let wi = li % wps;
      var word = 0u;
      var scale = 0.0;
      if (m0 + r < p.M) {
        word = codes[(m0 + r) * wpr + k0 / cpw + wi];
        scale = scales[(m0 + r) * nb + k0 / BLOCK];
      }
      for (var j = 0u; j < cpw; j++) {
        // Move code j to the top of the word, then shift it down arithmetically: sign extension.
        let c = bitcast<i32>(word << (32u - p.bits * (j + 1u))) >> (32u - p.bits);
        ws[r * LD + wi * cpw + j] = f32(c) * scale;
      }
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      let xr = lid.y * LD + k;
      let wr = lid.x * LD + k;
      let a = vec4(xs[xr], xs[xr + 16u * LD], xs[xr + 32u * LD], xs[xr + 48u * LD]);
      let b = vec4(ws[wr], ws[wr + 16u * LD], ws[wr + 32u * LD], ws[wr + 48u * LD]);
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
    workgroupBarrier();
  }

  store(n0 + lid.y, m0 + lid.x, acc0);
  store(n0 + lid.y + 16u, m0 + lid.x, acc1);
  store(n0 + lid.y + 32u, m0 + lid.x, acc2);
  store(n0 + lid.y + 48u, m0 + lid.x, acc3);
}

// store writes row n, columns m, m + 16, m + 32, m + 48 of out from acc (components in that order),
// skipping what lies outside [N, M].
fn store(n: u32, m: u32, acc: vec4<f32>) {
  if (n >= p.N) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    let c = m + 16u * j;
    if (c < p.M) {
{{- if .Bias}}
      out[n * p.M + c] = acc[j] + bias[c];
{{- else}}
      out[n * p.M + c] = acc[j];
{{- end}}
    }
  }
}
