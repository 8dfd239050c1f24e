// Row normalisation: y = (x - mean) / sqrt(var + eps) over contiguous rows of p.n values (biased variance).
//   LayerNorm: a row is the last dimension; with .Affine (LayerNormAffine) hw = groups = 1, so c = i.
//   GroupNorm: a row is one (batch element, group) of x [B, C, H, W], cg = C/groups channels of hw pixels
//              (contiguous); .Affine applies w[c] and, with .Bias, b[c], where c = (row % groups) * cg +
//              i / hw, and .SiLU then applies x * sigmoid(x) to the f32-rounded result.
//
// One workgroup of WG invocations per row (rows flattened over a 2-D grid), each striding over the row so
// that consecutive invocations read consecutive values; rows may be millions of values long. Statistics
// take two reads of the row: pass 1 estimates the mean m1, pass 2 sums d = x - m1 and d*d and corrects:
// mean = m1 + sum(d)/n, var = sum(d*d)/n - (sum(d)/n)^2. Because d is centred, f32 partial sums keep the
// accuracy of the float64 CPU reference even for a mean that is large next to the spread (a one-pass
// sum(x*x) - n*mean^2 would cancel catastrophically there); the output uses (x - m1) - sum(d)/n for the
// same reason. Partial sums combine by a tree reduction in workgroup memory.
//
// Variant parameters: .WG (power of two), .Affine, .Bias (with .Affine only), .SiLU.
struct P {
  rows: u32,
  n: u32,       // values per row
  hw: u32,      // values per channel (GroupNorm)
  groups: u32,  // GroupNorm groups; cg = n / hw channels per group
  eps: f32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
{{- if and .Affine .Bias}}
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
{{- else if .Affine}}
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
{{- else}}
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
{{- end}}

const WG = {{.WG}}u;

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
  workgroupBarrier(); // red is reused by the next call
  return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return; // the whole workgroup: row is uniform
  }
  let base = row * p.n;
  let nf = f32(p.n);

  var s1 = 0.0;
  for (var i = t; i < p.n; i += WG) {
    s1 += x[base + i];
  }
  let m1 = wgSum(vec2(s1, 0.0), t).x / nf;

  var sd = vec2(0.0, 0.0);
  for (var i = t; i < p.n; i += WG) {
    let dv = x[base + i] - m1;
    sd += vec2(dv, dv * dv);
  }
  let tot = wgSum(sd, t);
  let dm = tot.x / nf;
  let variance = max(tot.y / nf - dm * dm, 0.0);
  let rstd = 1.0 / sqrt(variance + p.eps);

{{- if .Affine}}
  let c0 = (row % p.groups) * (p.n / p.hw); // first channel of this group
{{- end}}
  for (var i = t; i < p.n; i += WG) {
    // x - mean as (x - m1) - dm: x - m1 is exact for x near m1 (Sterbenz), and dm is small, so the f32
    // rounding of a large mean (half an ulp of m1, relative to the spread) never enters.
    var y = ((x[base + i] - m1) - dm) * rstd;
{{- if .Affine}}
    let c = c0 + i / p.hw;
    y = y * w[c]{{if .Bias}} + b[c]{{end}};
{{- end}}
{{- if .SiLU}}
    y = y / (1.0 + exp(-y));
{{- end}}
    out[base + i] = y;
  }
}
