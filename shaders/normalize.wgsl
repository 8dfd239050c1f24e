// NormalizeHeads: each head's d-vector of x [B, L, C] (chunk = row*heads + h holds values [chunk*d, (chunk+1)*d))
// becomes x / max(||x||_2, 1e-12), times scale[h] when .Scale (F.normalize(dim=-1) on the [B, heads, L, d]
// view, then the per-head scale of VAR's attention).
//
// One workgroup of WG invocations per chunk (chunks flattened over a 2-D grid), striding over the d values;
// the sum of squares is reduced in workgroup memory. An f32 sum of squares (the CPU reference uses float64)
// only underflows for norms below ~1e-19, which the 1e-12 clamp replaces anyway; it would overflow for
// |x| ~ 1e19, far outside what attention's q and k hold.
//
// Variant parameters: .WG (power of two), .Scale.
struct P {
  chunks: u32,  // B * L * heads
  d: u32,
  heads: u32,
  _pad: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
{{- if .Scale}}
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
{{- else}}
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
{{- end}}

const WG = {{.WG}}u;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let chunk = wid.x + wid.y * nwg.x;
  if (chunk >= p.chunks) {
    return; // the whole workgroup: chunk is uniform
  }
  let base = chunk * p.d;

  var sq = 0.0;
  for (var i = t; i < p.d; i += WG) {
    let v = x[base + i];
    sq += v * v;
  }
  red[t] = sq;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) {
      red[t] += red[t + s];
    }
    workgroupBarrier();
  }
  let norm = max(sqrt(red[0]), 1e-12);

{{- if .Scale}}
  let g = scale[chunk % p.heads];
{{- end}}
  for (var i = t; i < p.d; i += WG) {
{{- if .Scale}}
    out[base + i] = (x[base + i] / norm) * g;
{{- else}}
    out[base + i] = x[base + i] / norm;
{{- end}}
  }
}
