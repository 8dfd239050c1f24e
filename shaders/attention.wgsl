// Attention: out[b, l, head h] = softmax_s(q[b, l, h] . k[b, s, h] * scale + mask[l, s]) @ v[b, s, h], heads
// side by side in the channel dimension (head h owns channels [h*d, (h+1)*d)): q [B, L, C], k, v [B, S, C],
// mask [L, S]. k and v may hold more rows than the S attended to (a key/value cache read up to the rows
// written so far, AttentionPrefix): each batch element's rows start kvRows rows apart.
//
// One workgroup per (b, h, l) query row, flattened as row = (b*heads + h)*L + l over a 2-D grid (one grid
// dimension holds at most 65535 workgroups). The query vector is staged in workgroup memory; the keys are
// walked in chunks of WG:
//   1. invocation t scores key s0 + t (a d-long f32 dot product in increasing channel order, times scale,
//      plus the mask, as the CPU reference rounds it);
//   2. the chunk's scores are shared; every invocation takes the same running maximum m over them
//      (online softmax), turns its own score into p = exp(score - m) and shares p;
//   3. the running sum and the output accumulators are rescaled by exp(m_old - m) and every invocation adds
//      sum_s p[s] * v[s, dim] for the DPT output dimensions it owns (dims t, t + WG, ..., in private
//      memory; consecutive invocations read consecutive channels of v).
// Finally out = acc / sum. -Inf scores (masked pairs) get p = 0 explicitly, and the running maximum starts
// at a finite sentinel, so no exp ever sees -Inf - -Inf; a row with every score masked keeps sum = 0 and
// is written as zeros, like the CPU backend.
//
// Variant parameters: .WG (power of two), .DPT (output dims per invocation: d <= WG*DPT), .Mask.
struct P {
  rows: u32,   // B * heads * L
  L: u32,
  S: u32,
  C: u32,
  heads: u32,
  d: u32,
  scale: f32,
  kvRows: u32, // rows per batch element in k and v (>= S)
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
{{- if .Mask}}
@group(0) @binding(4) var<storage, read> mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
{{- else}}
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
{{- end}}

const WG = {{.WG}}u;
const DPT = {{.DPT}}u;
const DMAX = WG * DPT; // (this Naga takes only a constant name or literal as an array size)
// Scores below NEG (-Inf from the mask) are set to NEG, which marks a key masked. NEG is finite so that
// differences of it stay finite.
const NEG = -3.0e38;

var<workgroup> qrow: array<f32, DMAX>;
var<workgroup> scores: array<f32, WG>;
var<workgroup> probs: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return; // the whole workgroup: row is uniform
  }
  let l = row % p.L;
  let bh = row / p.L;
  let h = bh % p.heads;
  let b = bh / p.heads;
  let qbase = (b * p.L + l) * p.C + h * p.d; // q[b, l, head h] and out[b, l, head h]
  let kvbase = b * p.kvRows * p.C + h * p.d;  // k[b, 0, head h], v[b, 0, head h]

  for (var j = t; j < p.d; j += WG) {
    qrow[j] = q[qbase + j];
  }
  workgroupBarrier();

  var m = NEG;     // running maximum of the unmasked scores so far (NEG: none yet)
  var sum = 0.0;   // running sum of exp(score - m)
  var acc: array<f32, DPT>;
  for (var s0 = 0u; s0 < p.S; s0 += WG) {
    let cnt = min(WG, p.S - s0);
    var score = NEG;
    if (t < cnt) {
      let kr = kvbase + (s0 + t) * p.C;
      var qk = 0.0;
      for (var j = 0u; j < p.d; j++) {
        qk += qrow[j] * k[kr + j];
      }
      score = qk * p.scale;
{{- if .Mask}}
      score += mask[l * p.S + s0 + t];
{{- end}}
      if (score < NEG) {
        score = NEG; // -Inf: masked
      }
    }
    scores[t] = score;
    workgroupBarrier();

    var mNew = m;
    for (var i = 0u; i < cnt; i++) {
      mNew = max(mNew, scores[i]);
    }
    var pr = 0.0;
    if (score != NEG) {
      pr = exp(score - mNew); // (a NaN score stays NaN and reaches the output, as on the CPU)
    }
    probs[t] = pr;
    // exp(m - mNew) is 1 while nothing is unmasked (both NEG) and 0 when the first unmasked score arrives.
    let corr = exp(m - mNew);
    m = mNew;
    workgroupBarrier();

    var csum = 0.0;
    for (var i = 0u; i < cnt; i++) {
      csum += probs[i];
    }
    sum = sum * corr + csum;
    for (var r = 0u; r < DPT; r++) {
      acc[r] *= corr;
    }
    for (var i = 0u; i < cnt; i++) {
      let pi = probs[i];
      let vr = kvbase + (s0 + i) * p.C;
      for (var r = 0u; r < DPT; r++) {
        let j = t + r * WG;
        if (j < p.d) {
          acc[r] += pi * v[vr + j];
        }
      }
    }
    // No barrier needed here: the next chunk writes `scores` (read by everyone before the barrier above)
    // and writes `probs` only after its first barrier, which everyone reaches after these reads.
  }

  var inv = 0.0;
  if (sum > 0.0) {
    inv = 1.0 / sum;
  }
  for (var r = 0u; r < DPT; r++) {
    let j = t + r * WG;
    if (j < p.d) {
      out[qbase + j] = acc[r] * inv;
    }
  }
}
