// GroupNorm of long groups, split over many workgroups: the result of norm.wgsl's GroupNorm variant
// (y = (x - mean) / sqrt(var + eps) over each (batch element, group) block of n contiguous values, then
// w[c], b[c] and optionally SiLU), for blocks too long for one workgroup to be fast: norm.wgsl gives each
// block one workgroup, so a VQVAE decoder layer (32 groups) kept 32 workgroups busy on a GPU with
// hundreds of cores.
//
// Each row (block) is cut into chunks of p.ch values (the last may be shorter), one workgroup each, in
// two dispatches:
//   .Pass "stats": workgroup (row, chunk) takes the chunk's own mean estimate m1 (one read), then the
//     sums of d = x - m1 and d*d (a second read, from cache), and stores (m1, sum d, sum d*d, count).
//   .Pass "apply": workgroup (row, chunk) combines the row's chunk statistics around the first chunk's
//     m1 (mref; each chunk mean is mref + delta_c, delta_c = (m1_c - mref) + sum_d_c / n_c, with
//     m1_c - mref exact for nearby values) into dm = mean - mref and the centred sum of squares
//     M2 = sum_c (sum_dd_c - sum_d_c^2 / n_c) + sum_c n_c (delta_c - dm)^2 (Chan et al.'s pairwise
//     update), then writes ((x - mref) - dm) * rstd for its chunk: as in norm.wgsl, a mean that is large
//     next to the spread never loses the spread to f32 rounding.
//
// Variant parameters: .Pass ("stats" or "apply"), .SiLU (apply).
struct P {
  rows: u32,
  n: u32,       // values per row
  hw: u32,      // values per channel
  groups: u32,  // groups; cg = n / hw channels per group
  eps: f32,
  ch: u32,      // values per chunk (a multiple of WG)
  chunks: u32,  // chunks per row: ceil(n / ch)
  total: u32,   // rows * chunks
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
{{- if eq .Pass "stats"}}
@group(0) @binding(2) var<storage, read_write> stats: array<vec4<f32>>; // [rows * chunks]
{{- else}}
@group(0) @binding(2) var<storage, read> stats: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
{{- end}}

const WG = 256u;

var<workgroup> red: array<vec2<f32>, WG>;

// wgSum returns the sum of v over the workgroup (every invocation gets it). Called in uniform control flow.
fn wgSum(v: vec2<f32>, t: u32) -> vec2<f32> {
  red[t] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) {
      red[t] += red[t + s];
    }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.total) {
    return; // the whole workgroup: g is uniform
  }
  let row = g / p.chunks;
  let c = g % p.chunks;
  let start = row * p.n + c * p.ch;
  let cnt = min(p.ch, p.n - c * p.ch);
{{- if eq .Pass "stats"}}
  var s1 = 0.0;
  for (var i = t; i < cnt; i += WG) {
    s1 += x[start + i];
  }
  let m1 = wgSum(vec2(s1, 0.0), t).x / f32(cnt);
  var sd = vec2(0.0, 0.0);
  for (var i = t; i < cnt; i += WG) {
    let dv = x[start + i] - m1;
    sd += vec2(dv, dv * dv);
  }
  let tot = wgSum(sd, t);
  if (t == 0u) {
    stats[g] = vec4(m1, tot.x, tot.y, f32(cnt));
  }
{{- else}}
  let first = row * p.chunks;
  let mref = stats[first].x;
  var acc = 0.0;
  for (var j = 0u; j < p.chunks; j++) {
    let st = stats[first + j];
    acc += st.w * (st.x - mref) + st.y;
  }
  let nf = f32(p.n);
  let dm = acc / nf;
  var m2 = 0.0;
  for (var j = 0u; j < p.chunks; j++) {
    let st = stats[first + j];
    let dc = (st.x - mref) + st.y / st.w - dm;
    m2 += (st.z - st.y * st.y / st.w) + st.w * dc * dc;
  }
  let variance = max(m2 / nf, 0.0);
  let rstd = 1.0 / sqrt(variance + p.eps);
  let c0 = (row % p.groups) * (p.n / p.hw); // first channel of this group
  let off = c * p.ch;
  for (var i = t; i < cnt; i += WG) {
    var y = ((x[start + i] - mref) - dm) * rstd;
    let ch = c0 + (off + i) / p.hw;
    y = y * w[ch] + b[ch];
{{- if .SiLU}}
    y = y / (1.0 + exp(-y));
{{- end}}
    out[start + i] = y;
  }
{{- end}}
}
