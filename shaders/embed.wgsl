// Embedding: out[r, c] = table[ids[r], c] for ids [N] (u32, range-checked on the host) and table [V, C].
// One invocation per output element.
struct P {
  n: u32,   // N * C
  c: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size({{.WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * {{.WG}}u;
  if (i >= p.n) { return; }
  let r = i / p.c;
  let c = i - r * p.c;
  out[i] = table[ids[r] * p.c + c];
}
