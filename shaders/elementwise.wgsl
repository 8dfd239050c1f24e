// Elementwise ops: out[i] = EXPR over up to three inputs a, b, c.
// Variants (core/webgpu/elementwise.go) choose the expression and the input count.
//   b is indexed with bi = i % p.nb (b's shape is a suffix of a's: broadcast over leading dims);
//   c with ci = (i / p.row) * p.cols + i % p.cols (one [cols] row per batch of p.row elements).
struct P {
  n: u32,      // elements of out
  nb: u32,     // elements of b
  row: u32,    // elements per batch row of a (L*C), for c
  cols: u32,   // C
  alpha: f32,
  beta: f32,
  lo: f32,
  hi: f32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
{{- if ge .Inputs 2}}
@group(0) @binding(2) var<storage, read> b: array<f32>;
{{- end}}
{{- if ge .Inputs 3}}
@group(0) @binding(3) var<storage, read> c: array<f32>;
{{- end}}
@group(0) @binding({{.Inputs | inc}}) var<storage, read_write> out: array<f32>;

@compute @workgroup_size({{.WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * {{.WG}}u;
  if (i >= p.n) { return; }
  let x = a[i];
{{- if ge .Inputs 2}}
  let bi = i % p.nb;
{{- end}}
{{- if ge .Inputs 3}}
  let ci = (i / p.row) * p.cols + i % p.cols;
{{- end}}
  out[i] = {{.Expr}};
}
