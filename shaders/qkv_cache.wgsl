// QKVToCache (core.FusedQKVToCache): from qkv [B, l, 3C] (q, k, v side by side in the channels, heads of d
// channels within each), q [B, l, C] is written to out, and k and v to rows n .. n+l of the caches
// kc, vc [B, S, C]. With .Norm, q and k of each head become x / max(||x||_2, 1e-12) and q is multiplied
// by scale[h] when .Scale: exactly what normalize.wgsl computes (the same workgroup size, strided loop and
// tree reduction, so the same sums), after the same copies SliceLast and WriteRows make.
//
// One workgroup of WG invocations per (b, row, head) chunk, flattened as chunk = (b*l + r)*heads + h over a
// 2-D grid; invocations stride over the d channels.
//
// Variant parameters: .WG (power of two), .Norm, .Scale (needs .Norm).
struct P {
  chunks: u32,  // B * l * heads
  d: u32,
  heads: u32,
  C: u32,
  l: u32,
  S: u32,
  n: u32,       // first cache row written
  _pad: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
{{- if .Scale}}
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> kc: array<f32>;
@group(0) @binding(5) var<storage, read_write> vc: array<f32>;
{{- else}}
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<f32>;
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;
{{- end}}

const WG = {{.WG}}u;

{{- if .Norm}}

var<workgroup> red: array<f32, WG>;

// normOf returns max(sqrt(sum of squares of x[base .. base+d)), 1e-12), the sum reduced as normalize.wgsl
// does. Called in uniform control flow.
fn normOf(base: u32, t: u32) -> f32 {
  var sq = 0.0;
  for (var i = t; i < p.d; i += WG) {
    let v = qkv[base + i];
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
  workgroupBarrier(); // red is reused by the next call
  return norm;
}
{{- end}}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let chunk = wid.x + wid.y * nwg.x;
  if (chunk >= p.chunks) {
    return; // the whole workgroup: chunk is uniform
  }
  let h = chunk % p.heads;
  let row = chunk / p.heads; // b * l + r
  let b = row / p.l;
  let r = row % p.l;
  let src = row * 3u * p.C + h * p.d;              // q of this head; k at + C, v at + 2C
  let dq = row * p.C + h * p.d;                    // out[b, r, head h]
  let dc = (b * p.S + p.n + r) * p.C + h * p.d;    // kc, vc[b, n + r, head h]
{{- if .Norm}}
  let qn = normOf(src, t);
  let kn = normOf(src + p.C, t);
{{- if .Scale}}
  let g = scale[h];
{{- end}}
{{- end}}
  for (var i = t; i < p.d; i += WG) {
{{- if .Scale}}
    out[dq + i] = (qkv[src + i] / qn) * g;
{{- else if .Norm}}
    out[dq + i] = qkv[src + i] / qn;
{{- else}}
    out[dq + i] = qkv[src + i];
{{- end}}
{{- if .Norm}}
    kc[dc + i] = qkv[src + p.C + i] / kn;
{{- else}}
    kc[dc + i] = qkv[src + p.C + i];
{{- end}}
    vc[dc + i] = qkv[src + 2u * p.C + i];
  }
}
