// Linear: out[n, m] = sum_k x[n, k] * w[m, k] (+ bias[m]) for x [N, K], w [M, K] (both row-major, so the
// reduction runs along contiguous memory of both operands), out [N, M].
//
// Tiling: one workgroup computes a TILE x TILE (64 x 64) block of out (rows n0.., columns m0..) with 16 x 16
// invocations; invocation (tx, ty) owns the contiguous 4 x 4 micro-tile rows n0 + 4ty + i, columns
// m0 + 4tx + j. The K dimension is walked in slices of TK: each slice of x and w (TILE rows x TK values) is
// loaded with consecutive invocations reading consecutive k of a row (coalesced global reads) and staged
// in workgroup memory k-major, as vec4s of four consecutive rows: xs[k * LD4 + r / 4][r % 4] = x[n0 + r,
// k0 + k]. The inner loop then reads one vec4 of x rows and one of w rows per k for 16 multiply-adds (a
// 128-bit shared load each; within a warp the xs read is a broadcast and the ws reads are 16 consecutive
// vec4s). Rows are padded to LD4 = 17 vec4s so that the transposing stores of a warp spread over the banks
// (word k * 68 + r: at most two invocations per bank). Every load and store is bounds-checked, so N, M
// and K need not be tile multiples; out-of-range elements read as 0.
//
// Each output is one f32 accumulator over k in increasing order, then + bias, like the CPU reference.
//
// Split K (grid z > 1): when the output has too few 64 x 64 tiles to fill a GPU (the first scales of VAR
// have one or two token rows, so a Linear is a handful of workgroups each walking all of K), workgroup z
// covers only k in [z * ks, (z+1) * ks) and writes its partial product to out[z * N * M ..] without bias
// or GELU; shaders/matmul_reduce.wgsl then adds the partials in z order, the bias and the GELU. Each
// partial is one accumulator in increasing k, so the result differs from the unsplit one only by where
// the sum is cut (within the matmul tolerance). ks is a multiple of 32: quantized slices never straddle a
// scale block.
//
// Quantized weights (.Quant): w is core.QuantHost's packed codes plus one f32 scale per 32 weights:
// dq[m, k] = f32(code[m, k]) * scales[m * nb + k / 32]. Codes are p.bits wide (8 or 4), packed cpw = 32 / bits
// to a u32 (int8: byte j of word w is element 4w+j; int4: nibble j, low nibble first, is element 8w+j; two's
// complement), each row padded to whole 32-element blocks: nb = ceil(K / 32) scales and wpr = nb * 32 / cpw
// words per row. Only the staging of w differs: a row slice is wps = TK / cpw whole words (slices are
// 16-aligned, so they never straddle a word or a scale block) and invocation li < 64 * wps reads one word and
// its row's scale and stages the cpw dequantized floats, so w costs 1 byte (int8) or half a byte (int4) per
// weight in global memory instead of 4, and the inner loop is unchanged. Rows beyond M stage zeros; the
// padding codes are zero and x columns beyond K stage as zero, so padding adds nothing. The code width is a
// uniform rather than a variant: one pipeline per bias variant for both widths (compiles are slow in
// browsers).
//
// Variant parameters: .Bias (a bias binding exists), .GELU (empty, or the expression of v stored instead
// of v: the GELU as shaders/elementwise.wgsl computes it), .Quant (quantized w: codes and scales
// bindings; needs TK = 16, half a scale block), .TK (K slice; TILE*TK must be a multiple of 256 and
// 2*TK*LD4*16 bytes must fit the 16 KiB of workgroup memory, so 16 or 24; the host uses 16).
struct P {
  N: u32,
  M: u32,
  K: u32,
  bits: u32, // code width of a quantized w (8 or 4); unused for f32 w
  ks: u32,   // K range per split (K when not split; a multiple of 32 when split)
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
{{- if .Quant}}
@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<f32>;
{{- else}}
@group(0) @binding(2) var<storage, read> w: array<f32>;
{{- end}}
{{- if .Bias}}
@group(0) @binding({{if .Quant}}4{{else}}3{{end}}) var<storage, read> bias: array<f32>;
{{- end}}
@group(0) @binding({{if .Quant}}{{if .Bias}}5{{else}}4{{end}}{{else}}{{if .Bias}}4{{else}}3{{end}}{{end}}) var<storage, read_write> out: array<f32>;

const TILE = 64u;      // output rows and columns per workgroup
const TK = {{.TK}}u;   // K slice staged per step
const LD4 = 17u;                 // vec4s per staged k (TILE / 4, padded, see above)
const LOADS = TILE * TK / 256u;  // elements each invocation stages per operand and slice
const STAGED = TK * LD4;         // (this Naga takes only a constant name or literal as an array size)
{{- if .Quant}}
const BLOCK = 32u;               // weights per scale (core.QuantBlock)
{{- end}}

var<workgroup> xs: array<vec4<f32>, STAGED>; // xs[k * LD4 + r / 4][r % 4] = x[n0 + r, k0 + k]
var<workgroup> ws: array<vec4<f32>, STAGED>; // ws[k * LD4 + c / 4][c % 4] = w[m0 + c, k0 + k] (dequantized)

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let n0 = wid.y * TILE;
  let m0 = wid.x * TILE;
{{- if .Quant}}
  let cpw = 32u / p.bits;  // codes per u32 word
  let wps = TK / cpw;      // words of one staged row slice
  let wloads = TILE * wps; // words staged per slice: 256 (int8) or 128 (int4), at most one per invocation
  let nb = (p.K + BLOCK - 1u) / BLOCK;
  let wpr = nb * (BLOCK / cpw);
{{- end}}
  // accI holds row n0 + 4ty + I, columns m0 + 4tx + j in component j: four vec4 accumulators rather
  // than an indexed array, so that every driver keeps them in registers.
  var acc0 = vec4<f32>();
  var acc1 = vec4<f32>();
  var acc2 = vec4<f32>();
  var acc3 = vec4<f32>();

  // This workgroup's K range: the wid.z-th range of ks values (all of K when the grid has one layer).
  let kBeg = wid.z * p.ks;
  let kEnd = min(kBeg + p.ks, p.K);
  for (var k0 = kBeg; k0 < kEnd; k0 += TK) {
    for (var e = 0u; e < LOADS; e++) {
      let idx = li + e * 256u;
      let r = idx / TK;
      let k = idx % TK;
      let gk = k0 + k;
      var xv = 0.0;
      if (n0 + r < p.N && gk < kEnd) {
        xv = x[(n0 + r) * p.K + gk];
      }
      xs[k * LD4 + r / 4u][r % 4u] = xv;
{{- if not .Quant}}
      var wv = 0.0;
      if (m0 + r < p.M && gk < kEnd) {
        wv = w[(m0 + r) * p.K + gk];
      }
      ws[k * LD4 + r / 4u][r % 4u] = wv;
{{- end}}
    }
{{- if .Quant}}
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
        ws[(wi * cpw + j) * LD4 + r / 4u][r % 4u] = f32(c) * scale;
      }
    }
{{- end}}
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      let a = xs[k * LD4 + lid.y];
      let b = ws[k * LD4 + lid.x];
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
    workgroupBarrier();
  }

  let n = n0 + 4u * lid.y;
  let m = m0 + 4u * lid.x;
  let o = wid.z * p.N * p.M; // the split's partial product (0 when not split)
  store(o, n, m, acc0);
  store(o, n + 1u, m, acc1);
  store(o, n + 2u, m, acc2);
  store(o, n + 3u, m, acc3);
}

// store writes row n, columns m .. m + 3 of the [N, M] matrix at out[o..] from acc (components in that
// order), skipping what lies outside [N, M].
fn store(o: u32, n: u32, m: u32, acc: vec4<f32>) {
  if (n >= p.N) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    let c = m + j;
    if (c < p.M) {
{{- if .Bias}}
      let v = acc[j] + bias[c];
{{- else}}
      let v = acc[j];
{{- end}}
{{- if .GELU}}
      out[o + n * p.M + c] = {{.GELU}};
{{- else}}
      out[o + n * p.M + c] = v;
{{- end}}
    }
  }
}
