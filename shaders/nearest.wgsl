// NearestCode: ids[r] = argmin over v of d(v) = (|z_r|^2 + |e_v|^2) - 2 * (z_r . e_v) for z [N, C] and
// codebook e [V, C], first index on ties; d is evaluated exactly as the CPU reference does (each dot
// product accumulated left to right in f32, then that expression), so the ids match it.
//
// One workgroup per row r (workgroup index wid.x + wid.y * nwg.x): invocation l scans v = l, l + WG, ...
// keeping its best (d, v); the WG candidates are then reduced in workgroup memory by (d, then v), which
// yields the first minimum of the whole scan.
// NaN distances follow the reference's sequential scan: a NaN at v = 0 wins outright (nothing compares
// below it) and a NaN anywhere else never wins. NaN is tested on the bits, since WGSL implementations
// may assume x != x is false.
struct P {
  n: u32,
  v: u32,
  c: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> e: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;

const WG = {{.WG}}u;
const NONE = 0xffffffffu;  // no candidate yet
const NAN0 = 0x80000000u;  // v = 0 with a NaN distance: beats everything
var<workgroup> bestD: array<f32, {{.WG}}>;
var<workgroup> bestV: array<u32, {{.WG}}>;

// better reports whether candidate (d1, v1) beats (d2, v2).
fn better(d1: f32, v1: u32, d2: f32, v2: u32) -> bool {
  if (v1 == NAN0 || v2 == NONE) { return v1 != NONE; }
  if (v1 == NONE || v2 == NAN0) { return false; }
  return d1 < d2 || (d1 == d2 && v1 < v2);
}

fn isNaN(f: f32) -> bool {
  return (bitcast<u32>(f) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size({{.WG}})
fn main(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.n) { return; } // the same for the whole workgroup
  let zb = r * p.c;
  var zsq = 0.0;
  for (var k = 0u; k < p.c; k++) {
    zsq = zsq + z[zb + k] * z[zb + k];
  }
  var bd = 0.0;
  var bv = NONE;
  for (var v = l; v < p.v; v += WG) {
    let eb = v * p.c;
    var esq = 0.0;
    var dt = 0.0;
    for (var k = 0u; k < p.c; k++) {
      let ev = e[eb + k];
      esq = esq + ev * ev;
      dt = dt + z[zb + k] * ev;
    }
    let d = (zsq + esq) - 2.0 * dt;
    if (isNaN(d)) {
      if (v == 0u) { bv = NAN0; }
      continue;
    }
    if (better(d, v, bd, bv)) {
      bd = d;
      bv = v;
    }
  }
  bestD[l] = bd;
  bestV[l] = bv;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (l < s && better(bestD[l + s], bestV[l + s], bestD[l], bestV[l])) {
      bestD[l] = bestD[l + s];
      bestV[l] = bestV[l + s];
    }
    workgroupBarrier();
  }
  if (l == 0u) {
    ids[r] = select(bestV[0], 0u, bestV[0] == NAN0);
  }
}
