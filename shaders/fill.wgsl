// Fill: out[i] = 0 for i < p.n (Zeros). The output may be a reused pool buffer holding an earlier
// tensor's values, so every element is written.
struct P {
  n: u32, // elements of out
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size({{.WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * {{.WG}}u;
  if (i >= p.n) { return; }
  out[i] = 0.0;
}
