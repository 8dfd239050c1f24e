// Upsample2x (nearest): x [planes, H, W] -> y [planes, 2H, 2W], y[q, i, j] = x[q, i/2, j/2]. One invocation
// per output element.
struct P {
  n: u32,   // elements of y
  h: u32,
  w: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size({{.WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * {{.WG}}u;
  if (i >= p.n) { return; }
  let w2 = 2u * p.w;
  let row = i / w2;          // output row index over planes: q * 2H + oy
  let ox = i - row * w2;
  let q = row / (2u * p.h);
  let oy = row - q * 2u * p.h;
  y[i] = x[(q * p.h + oy / 2u) * p.w + ox / 2u];
}
