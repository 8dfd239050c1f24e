// Resizes of x [planes, H, W] to y [planes, OH, OW], one invocation per output element, reproducing the
// CPU reference (core/cpu/resize.go) operation by operation in f32.
{{- if eq .Mode "bicubic"}}
//
// Bicubic (F.interpolate mode='bicubic', align_corners=False, A = -0.75). The taps come from the host:
// taps[8*i .. 8*i+8) are output row i's four clamped input rows and the bit patterns of their four f32
// weights; output column j's taps follow at p.colBase + 8*j. Computing them on the host keeps the sample
// positions and weights bit-identical to the CPU's (its position is one float64 expression rounded once,
// and WGSL neither has f64 nor promises correctly rounded division or unfused multiply-adds).
// Each tap row is interpolated along x, then the four row values are combined along y, left to right.
{{- else}}
//
// Area (F.interpolate mode='area' = adaptive average pooling): output (i, j) is the mean of input rows
// [i*H/OH, ceil((i+1)*H/OH)) and columns [j*W/OW, ceil((j+1)*W/OW)), summed in row-major order and divided
// by the row count and then the column count, as PyTorch's CPU kernel does.
{{- end}}
struct P {
  n: u32,        // elements of y
  h: u32,
  w: u32,
  oh: u32,
  ow: u32,
  colBase: u32,  // bicubic: word offset of the column taps
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
{{- if eq .Mode "bicubic"}}
@group(0) @binding(2) var<storage, read> taps: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
{{- else}}
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
{{- end}}

@compute @workgroup_size({{.WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * {{.WG}}u;
  if (i >= p.n) { return; }
  let row = i / p.ow;        // q * OH + oy
  let ox = i - row * p.ow;
  let q = row / p.oh;
  let oy = row - q * p.oh;
  let plane = q * p.h * p.w;
{{- if eq .Mode "bicubic"}}
  let ty = oy * 8u;
  let tx = p.colBase + ox * 8u;
  let x0 = taps[tx];
  let x1 = taps[tx + 1u];
  let x2 = taps[tx + 2u];
  let x3 = taps[tx + 3u];
  let wx0 = bitcast<f32>(taps[tx + 4u]);
  let wx1 = bitcast<f32>(taps[tx + 5u]);
  let wx2 = bitcast<f32>(taps[tx + 6u]);
  let wx3 = bitcast<f32>(taps[tx + 7u]);
  var acc = 0.0;
  for (var j = 0u; j < 4u; j++) {
    let r = plane + taps[ty + j] * p.w;
    let v = x[r + x0] * wx0 + x[r + x1] * wx1 + x[r + x2] * wx2 + x[r + x3] * wx3;
    let wy = bitcast<f32>(taps[ty + 4u + j]);
    if (j == 0u) {
      acc = v * wy; // the first product starts the sum (not 0 + product), as in the reference
    } else {
      acc = acc + v * wy;
    }
  }
  y[i] = acc;
{{- else}}
  let y0 = oy * p.h / p.oh;
  let y1 = ((oy + 1u) * p.h + p.oh - 1u) / p.oh;
  let x0 = ox * p.w / p.ow;
  let x1 = ((ox + 1u) * p.w + p.ow - 1u) / p.ow;
  var sum = 0.0;
  for (var iy = y0; iy < y1; iy++) {
    let r = plane + iy * p.w;
    for (var ix = x0; ix < x1; ix++) {
      sum = sum + x[r + ix];
    }
  }
  y[i] = sum / f32(y1 - y0) / f32(x1 - x0);
{{- end}}
}
