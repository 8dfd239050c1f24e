// One reverse step of MAR's diffusion head (core.DDPMCoefs, core.DDPMSample is the spec): for x [n, C],
// the network's output o [n or 2n, 2C] (eps then the variance values; with guidance the unconditional rows
// follow the conditional ones) and noise [n, C], the sample [n, C]. One invocation per element.
struct P {
  n: u32,
  c: u32,
  guided: u32,
  _pad: u32,
  cfg: f32,
  sra: f32,      // sqrt(1/alpha_bar)
  srm1: f32,     // sqrt(1/alpha_bar - 1)
  c1: f32,       // posterior mean coefficients
  c2: f32,
  minlog: f32,   // log posterior variance (clipped)
  maxlog: f32,   // log beta
  nonzero: f32,  // 0 at the last step
  temp: f32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> o: array<f32>;
@group(0) @binding(3) var<storage, read> noise: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n * p.c) { return; }
  let r = i / p.c;
  let j = i % p.c;
  var eps = o[r * 2u * p.c + j];
  if (p.guided != 0u) {
    let u = o[(p.n + r) * 2u * p.c + j];
    eps = u + p.cfg * (eps - u);
  }
  let v = o[r * 2u * p.c + p.c + j];
  let frac = (v + 1.0) / 2.0;
  let logvar = frac * p.maxlog + (1.0 - frac) * p.minlog;
  let x0 = p.sra * x[i] - p.srm1 * eps;
  let mean = p.c1 * x0 + p.c2 * x[i];
  out[i] = mean + p.nonzero * exp(0.5 * logvar) * noise[i] * p.temp;
}
