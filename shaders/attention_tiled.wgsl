// Attention for head dimensions d <= 64 (VAR's transformer: d = 64), tiled over queries: the same result
// as attention.wgsl (out[b, l, head h] = softmax_s(q . k * scale + mask[l, s]) @ v over the first S of
// kvRows rows per batch element; heads side by side in the channels), but one workgroup of 256 invocations
// serves BQ = 16 query rows of one (b, h), so every key and value row is read from global memory once per
// 16 queries instead of once per query.
//
// Workgroup w covers queries l0 = (w % qblocks) * BQ .. + BQ of bh = w / qblocks (b = bh / heads,
// h = bh % heads), over a 2-D grid as grid1D spreads it. Invocation t is (qi, kj) = (t / 16, t % 16). The
// query tile lives in workgroup memory for the whole run; keys and values are walked in chunks of BK = 16
// rows, each staged once:
//   1. invocation (qi, kj) scores query qi against key kj of the chunk (a d-long f32 dot product in
//      increasing channel order, times scale, plus the mask; -Inf and beyond-S keys become NEG = masked);
//   2. every invocation of row qi takes the row's running maximum over the shared scores in the same order,
//      so the 16 copies of the row's state (m, sum) stay identical, turns its own score into
//      p = exp(score - m) (0 when masked) and shares p;
//   3. the running sum and output are rescaled by exp(m_old - m) and invocation (qi, kj) adds
//      sum_j p[qi, j] * v[j, 4kj .. 4kj+3] to the four output dimensions it owns.
// Finally out = acc / sum, zeros for a row with every key masked (sum = 0), as attention.wgsl does.
// Rows and dimensions beyond L and d are staged as zeros and never stored.
//
// Workgroup memory: q 4 KiB, k 4.1 KiB (rows padded to 65 words: the 16 keys of a score step fall in
// distinct banks), v 4 KiB, scores and probabilities 2 x 1.1 KiB: within the 16 KiB every browser grants.
//
// Variant parameters: .Mask.
struct P {
  qblocks: u32, // ceil(L / BQ)
  L: u32,
  S: u32,
  C: u32,
  heads: u32,
  d: u32,
  scale: f32,
  kvRows: u32,  // rows per batch element in k and v (>= S)
  groups: u32,  // B * heads * qblocks
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
{{- if .Mask}}
@group(0) @binding(4) var<storage, read> mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
{{- else}}
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
{{- end}}

const BQ = 16u;  // query rows per workgroup
const BK = 16u;  // key rows per chunk
const DH = 64u;  // largest head dimension
const KLD = 65u; // padded row stride of the staged keys
const NEG = -3.0e38;
const QN = 1024u;  // BQ * DH (this Naga takes only a constant name or literal as an array size)
const KN = 1040u;  // BK * KLD
const VN = 256u;   // BK * DH / 4
const SN = 272u;   // BQ * (BK + 1)

var<workgroup> qs: array<f32, QN>;        // qs[qi * DH + j] = q[l0 + qi, head h, j]
var<workgroup> ks: array<f32, KN>;        // ks[kj * KLD + j] = k[s0 + kj, head h, j]
var<workgroup> vs: array<vec4<f32>, VN>;  // vs[kj * 16 + c] = v[s0 + kj, head h, 4c .. 4c+3]
var<workgroup> sc: array<f32, SN>;        // sc[qi * 17 + kj]: scores of the chunk
var<workgroup> pr: array<f32, SN>;        // pr[qi * 17 + kj]: their exp(score - m)

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.groups) {
    return; // the whole workgroup: w is uniform
  }
  let qb = w % p.qblocks;
  let bh = w / p.qblocks;
  let h = bh % p.heads;
  let b = bh / p.heads;
  let l0 = qb * BQ;
  let kvbase = b * p.kvRows * p.C + h * p.d; // k[b, 0, head h], v[b, 0, head h]
  let qi = t / 16u;
  let kj = t % 16u;
  let l = l0 + qi;

  // Stage the query tile: invocation t loads row t / 16, dimensions 4 (t % 16) .. + 3.
  for (var c = 0u; c < 4u; c++) {
    let j = 4u * kj + c;
    var x = 0.0;
    if (l < p.L && j < p.d) {
      x = q[(b * p.L + l) * p.C + h * p.d + j];
    }
    qs[qi * DH + j] = x;
  }

  var m = NEG;   // running maximum of row qi's unmasked scores (NEG: none yet)
  var sum = 0.0; // running sum of exp(score - m)
  var acc = vec4<f32>();
  for (var s0 = 0u; s0 < p.S; s0 += BK) {
    // Stage key and value rows s0 + qi (the same t -> (row, 4 dimensions) split as the queries).
    let s = s0 + qi;
    var kv4 = vec4<f32>();
    var vv4 = vec4<f32>();
    if (s < p.S) {
      let r = kvbase + s * p.C;
      for (var c = 0u; c < 4u; c++) {
        let j = 4u * kj + c;
        if (j < p.d) {
          kv4[c] = k[r + j];
          vv4[c] = v[r + j];
        }
      }
    }
    for (var c = 0u; c < 4u; c++) {
      ks[qi * KLD + 4u * kj + c] = kv4[c];
    }
    vs[qi * 16u + kj] = vv4;
    workgroupBarrier();

    var score = NEG;
    if (s0 + kj < p.S) {
      var qk = 0.0;
      for (var j = 0u; j < p.d; j++) {
        qk += qs[qi * DH + j] * ks[kj * KLD + j];
      }
      score = qk * p.scale;
{{- if .Mask}}
      if (l < p.L) {
        score += mask[l * p.S + s0 + kj];
      }
{{- end}}
      if (score < NEG) {
        score = NEG; // -Inf: masked
      }
    }
    sc[qi * 17u + kj] = score;
    workgroupBarrier();

    var mNew = m;
    for (var i = 0u; i < BK; i++) {
      mNew = max(mNew, sc[qi * 17u + i]);
    }
    var pv = 0.0;
    if (score != NEG) {
      pv = exp(score - mNew); // (a NaN score stays NaN and reaches the output)
    }
    pr[qi * 17u + kj] = pv;
    // exp(m - mNew) is 1 while nothing is unmasked (both NEG) and 0 when the first unmasked score arrives.
    let corr = exp(m - mNew);
    m = mNew;
    workgroupBarrier();

    var csum = 0.0;
    var part = vec4<f32>();
    for (var i = 0u; i < BK; i++) {
      let pi = pr[qi * 17u + i];
      csum += pi;
      part += pi * vs[i * 16u + kj];
    }
    sum = sum * corr + csum;
    acc = acc * corr + part;
    // The next chunk overwrites ks, vs and sc before its first barrier: everyone must be done reading.
    workgroupBarrier();
  }

  if (l >= p.L) {
    return;
  }
  var inv = 0.0;
  if (sum > 0.0) {
    inv = 1.0 / sum;
  }
  let ob = (b * p.L + l) * p.C + h * p.d;
  for (var c = 0u; c < 4u; c++) {
    let j = 4u * kj + c;
    if (j < p.d) {
      out[ob + j] = acc[c] * inv;
    }
  }
}
