// Strided block copy: dst[r * p.dstStride + p.dstOff + c] = src[r * p.srcStride + p.srcOff + c] for rows
// r < p.rows and columns c < p.width (counts in elements). Every tensor is viewed as [rows, stride]; this
// one kernel serves SliceLast (a column range of every row), Concat (one dispatch per input, each into its
// column range of the output rows) and plain copies (one row).
struct P {
  n: u32,          // rows * width: elements copied
  width: u32,
  srcStride: u32,
  srcOff: u32,
  dstStride: u32,
  dstOff: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size({{.WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * {{.WG}}u;
  if (i >= p.n) { return; }
  let r = i / p.width;
  let c = i - r * p.width;
  dst[r * p.dstStride + p.dstOff + c] = src[r * p.srcStride + p.srcOff + c];
}
