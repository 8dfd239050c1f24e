// The second pass of a split-K Linear (shaders/matmul.wgsl with grid z > 1): out[i] = sum over z of
// part[z * N * M + i] in increasing z, + bias[i % M] (.Bias), then GELU (.GELU, as matmul.wgsl applies it).
// One invocation per output element, 1-D over a 2-D grid.
//
// Variant parameters: .WG, .Bias, .GELU.
struct P {
  total: u32,  // N * M
  M: u32,
  splits: u32,
  _pad: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
{{- if .Bias}}
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
{{- else}}
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
{{- end}}

const WG = {{.WG}}u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.total) {
    return;
  }
  var v = part[i];
  for (var z = 1u; z < p.splits; z++) {
    v += part[z * p.total + i];
  }
{{- if .Bias}}
  v += bias[i % p.M];
{{- end}}
{{- if .GELU}}
  out[i] = {{.GELU}};
{{- else}}
  out[i] = v;
{{- end}}
}
