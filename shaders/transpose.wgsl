// Transpose12: x [A, M, N] -> y [A, N, M]. A workgroup moves one TxT tile through workgroup memory so that
// both the reads (along n) and the writes (along m) touch consecutive addresses. The tile has one column
// of padding so that reading it transposed does not hit the same memory bank T times.
// Grid: x over tiles of n, y over tiles of m, z over a (plus p.a0 when A is split over several dispatches).
struct P {
  m: u32,
  n: u32,
  a0: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const T = {{.T}}u;
const TILE = T * (T + 1u);
var<workgroup> tile: array<f32, TILE>;

@compute @workgroup_size({{.T}}, {{.T}})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let a = p.a0 + wid.z;
  let base = a * p.m * p.n;
  let m0 = wid.y * T;
  let n0 = wid.x * T;
  // Read x[a, m0 + ly, n0 + lx] into tile[ly][lx].
  let rm = m0 + lid.y;
  let rn = n0 + lid.x;
  if (rm < p.m && rn < p.n) {
    tile[lid.y * (T + 1u) + lid.x] = x[base + rm * p.n + rn];
  }
  workgroupBarrier();
  // Write y[a, n0 + ly, m0 + lx] = x[a, m0 + lx, n0 + ly] = tile[lx][ly].
  let wn = n0 + lid.y;
  let wm = m0 + lid.x;
  if (wn < p.n && wm < p.m) {
    y[base + wn * p.m + wm] = tile[lid.x * (T + 1u) + lid.y];
  }
}
