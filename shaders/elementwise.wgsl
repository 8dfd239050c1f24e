// Elementwise ops: out[i] = EXPR over up to three inputs a, b, c.
// Variants (core/webgpu/elementwise.go) choose the expression and the input count, and .Erf defines
// gelu_erf() for the expression.
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

{{- if .Erf}}

// gelu_erf is the exact GELU, 0.5 * x * (1 + erf(z)) with z = x / sqrt(2). WGSL has no erf: it is two
// float32 pieces, the same polynomials as the CPU backend's fast path (core/cpu/fastmath.go, where their
// fit and their measured error are described): erf(z) = z * P(z^2) for |z| < 0.875, and erfc(a) =
// exp(-a^2) * t * R(t), t = 2 / (2 + a), for a = |z| >= 0.875. For z <= -0.875, 1 + erf(z) is erfc(-z)
// itself, so the negative tail keeps its relative accuracy instead of cancelling to 0.
fn erf_small(z: f32) -> f32 {
  let s = z * z;
  return z * (1.128379158 + s * (-0.3761255451 + s * (0.112824966 + s * (-0.02679294778
         + s * (0.005034370664 + s * (-0.0006214585368))))));
}

fn erfc_large(a: f32) -> f32 {
  let t = 2.0 / (2.0 + a);
  let r = 0.2820947341 + t * (0.2821055036 + t * (0.2464953723 + t * (0.180499493 + t * (0.05749281891
          + t * (0.08638957021 + t * (-0.2284015991 + t * 0.0938726033))))));
  // exp(-a*a) is 0 in f32 from a = 10.2 on (with t * r finite, also for a = +Inf): clamping its argument
  // there changes nothing and keeps drivers' exp away from huge and infinite arguments.
  return exp(max(-a * a, -104.0)) * t * r;
}

fn gelu_erf(x: f32) -> f32 {
  let z = x * 0.70710678118654752;
  if (abs(z) < 0.875) {
    return 0.5 * x * (1.0 + erf_small(z));
  }
  if (z > 0.0) {
    return 0.5 * x * (2.0 - erfc_large(z));
  }
  return 0.5 * x * erfc_large(-z);
}
{{- end}}

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
