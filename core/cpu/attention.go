package cpu

import (
	"math"

	"github.com/webvar/webvar/core"
)

// Attention is softmax(q_h @ k_h^T * scale + mask) @ v_h for every batch element and head, heads side by side
// in the channel dimension (head h owns channels [h*d, (h+1)*d), d = C/heads): q [B, L, C], k and v
// [B, S, C], mask [L, S] additive or nil; out [B, L, C].
//
// Spec, for each b, h and query l:
//
//	score[s] = float32(dot(q[b, l, head h], k[b, s, head h]) * scale) + mask[l, s]   (dot in float32)
//	p[s]     = exp(score[s] - max_s score) / sum_s exp(score[s] - max_s score)     (exp and sum in float64)
//	out[b, l, head h] = sum_s p[s] * v[b, s, head h]                              (float32, s increasing)
//
// The mask may hold -Inf (masked pairs get p = 0). A query row whose scores are all -Inf has no defined
// softmax (PyTorch returns NaN); this backend returns zeros for that row instead, so that one fully masked
// row cannot poison later layers with NaN. The models never mask a row fully.
func (be *Backend) Attention(q, k, v *core.Tensor, heads int, scale float32, mask *core.Tensor) (*core.Tensor, error) {
	return be.attention(q, k, v, -1, heads, scale, mask)
}

// AttentionPrefix is Attention without a mask over the first n rows of k and v [B, S, C], 0 <= n <= S (the
// rows of a key/value cache written so far): exactly Attention on k[:, :n] and v[:, :n], whose rows after
// n are never read.
func (be *Backend) AttentionPrefix(q, k, v *core.Tensor, n, heads int, scale float32) (*core.Tensor, error) {
	if k != nil && len(k.Shape()) == 3 && (n < 0 || n > k.Dim(1)) {
		return nil, shapeError("attention", "prefix of %d rows, want 0..%d for k %v", n, k.Dim(1), k.Shape())
	}
	return be.attention(q, k, v, n, heads, scale, nil)
}

// attention is Attention over the first n rows of k and v (all S when n < 0). k and v stay indexed
// [B, S, C]: batch element b's rows start at b*S*C whatever n is.
func (be *Backend) attention(q, k, v *core.Tensor, n, heads int, scale float32, mask *core.Tensor) (*core.Tensor, error) {
	const op = "attention"
	q_BLC, err := floats(op, "q", q)
	if err != nil {
		return nil, err
	}
	k_BSC, err := floats(op, "k", k)
	if err != nil {
		return nil, err
	}
	v_BSC, err := floats(op, "v", v)
	if err != nil {
		return nil, err
	}
	qs, ks := q.Shape(), k.Shape()
	if len(qs) != 3 || len(ks) != 3 || !ks.Equal(v.Shape()) || ks[0] != qs[0] || ks[2] != qs[2] {
		return nil, shapeError(op, "want q [B, L, C] and k, v [B, S, C], got q %v, k %v, v %v", qs, ks, v.Shape())
	}
	B, L, S, C := qs[0], qs[1], ks[1], qs[2]
	stride := S * C // elements per batch element of k and v
	if n >= 0 {
		S = n
	}
	if heads <= 0 || C%heads != 0 {
		return nil, shapeError(op, "%d heads do not divide %d channels", heads, C)
	}
	d := C / heads
	var mask_LS []float32
	if mask != nil {
		if mask_LS, err = floats(op, "mask", mask); err != nil {
			return nil, err
		}
		if !mask.Shape().Equal(core.Shape{L, S}) {
			return nil, shapeError(op, "mask %v, want [%d, %d] for q %v and k %v", mask.Shape(), L, S, qs, ks)
		}
	}

	out, out_BLC := newTensor(B, L, C)
	if be.kernel != nil && S > 0 { // (no keys: every row is fully masked, zeros, below)
		be.attentionPacked(q_BLC, k_BSC, v_BSC, mask_LS, out_BLC, B, L, S, stride, C, heads, scale)
		return out, nil
	}
	// One work item is one query row of one head; all cost the same.
	be.parallelFor(B*heads*L, func(i0, i1 int) {
		score := make([]float32, S)
		prob := make([]float64, S)
		for i := i0; i < i1; i++ {
			b, h, l := i/(heads*L), i/L%heads, i%L
			qRow := q_BLC[(b*L+l)*C+h*d:][:d]
			// kv(s) is head h's d-vector of key or value s of batch element b.
			kv := func(t []float32, s int) []float32 { return t[b*stride+s*C+h*d:][:d] }

			// Three keys at a time only for speed (independent accumulators); each score is still one
			// float32 dot product accumulated in increasing channel order.
			s := 0
			for ; s+3 <= S; s += 3 {
				score[s], score[s+1], score[s+2] = dot1x3(qRow, kv(k_BSC, s), kv(k_BSC, s+1), kv(k_BSC, s+2))
			}
			for ; s < S; s++ {
				score[s] = dot(qRow, kv(k_BSC, s))
			}
			for s := range score {
				score[s] = float32(score[s] * scale)
				if mask_LS != nil {
					score[s] += mask_LS[l*S+s]
				}
			}
			if !softmax(score, prob) {
				continue // fully masked row: output stays zero (see the doc comment)
			}
			// o = sum over s of p[s]*v[s], accumulated in increasing s. Three values per pass over o only
			// save loads and stores: Go evaluates o + a + b + c as ((o + a) + b) + c, the same order.
			o := out_BLC[(b*L+l)*C+h*d:][:d]
			s = 0
			for ; s+3 <= S; s += 3 {
				p0, p1, p2 := float32(prob[s]), float32(prob[s+1]), float32(prob[s+2])
				v0, v1, v2 := kv(v_BSC, s)[:len(o)], kv(v_BSC, s+1)[:len(o)], kv(v_BSC, s+2)[:len(o)]
				for j := range o {
					o[j] = o[j] + p0*v0[j] + p1*v1[j] + p2*v2[j]
				}
			}
			for ; s < S; s++ {
				p, vRow := float32(prob[s]), kv(v_BSC, s)[:len(o)]
				for j := range o {
					o[j] += p * vRow[j]
				}
			}
		}
	})
	return out, nil
}

// softmax writes softmax(score) into prob, subtracting the maximum before exponentiating so that no exp
// overflows. It reports false, leaving prob unspecified, when every score is -Inf.
func softmax(score []float32, prob []float64) bool {
	maxScore := math.Inf(-1)
	for _, x := range score {
		maxScore = max(maxScore, float64(x))
	}
	if math.IsInf(maxScore, -1) {
		return false
	}
	var sum float64
	for s, x := range score {
		prob[s] = math.Exp(float64(x) - maxScore)
		sum += prob[s]
	}
	for s := range prob {
		prob[s] /= sum
	}
	return true
}

// attnRows is the number of query rows per work item of attentionPacked.
const attnRows = 64

// attentionPacked is Attention through two packed products per work item (gemm.go): the scores of up to
// attnRows queries of one batch element and head against all keys, softmax per row as in the spec, then
// P @ V straight into the output. Sums are reordered as in gemm.go, and the softmax exponentiates in
// float32 (softmaxFast) like PyTorch's CPU kernels. Keys and values are the first S rows of each batch
// element's stride elements of k and v.
func (be *Backend) attentionPacked(q_BLC, k_BSC, v_BSC, mask_LS, out_BLC []float32, B, L, S, stride, C, heads int, scale float32) {
	d := C / heads
	chunks := (L + attnRows - 1) / attnRows
	be.parallelFor(B*heads*chunks, func(i0, i1 int) {
		score := make([]float32, attnRows*S)
		for i := i0; i < i1; i++ {
			b, h, l0 := i/(heads*chunks), i/chunks%heads, i%chunks*attnRows
			rows := min(attnRows, L-l0)
			// score[l, s] = q[b, l0+l, head h] . k[b, s, head h]
			q := q_BLC[(b*L+l0)*C+h*d:]
			keys := bRows{f: k_BSC[b*stride+h*d:], ld: C}
			be.gemmPacked(be.kernel, false, q, C, rows, keys, S, d, score, S, nil)
			for l := range rows {
				row := score[l*S : (l+1)*S]
				for s := range row {
					row[s] = float32(row[s] * scale)
					if mask_LS != nil {
						row[s] += mask_LS[(l0+l)*S+s]
					}
				}
				if !softmaxFast(row) {
					clear(row) // fully masked row: output zero (see Attention)
				}
			}
			// out[b, l0+l, head h] = sum over s of p[l, s] * v[b, s, head h]
			values := bCols{f: v_BSC[b*stride+h*d:], ld: C}
			be.gemmPacked(be.kernel, false, score, S, rows, values, d, S, out_BLC[(b*L+l0)*C+h*d:], C, nil)
		}
	})
}

// softmaxFast is softmax in place, with expf instead of the float64 exp (the sum is still float64). It
// reports false, leaving row unspecified, when every score is -Inf.
func softmaxFast(row []float32) bool {
	maxScore := float32(math.Inf(-1))
	for _, x := range row {
		if x > maxScore { // not the max builtin, whose NaN and signed-zero rules cost a branch per element
			maxScore = x
		}
	}
	if math.IsInf(float64(maxScore), -1) {
		return false
	}
	done := 0
	if fastExpShift != nil {
		done = fastExpShift(row, row, maxScore)
	}
	for s, x := range row[done:] {
		row[done+s] = expf(x - maxScore)
	}
	var sum float64
	for _, e := range row {
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for s := range row {
		row[s] *= inv
	}
	return true
}

// expf is e^x in float32 for x <= 0 (softmax's arguments), within 2 ulp of the exact value for normal
// results (TestExpf): x = n*ln2 + r with |r| <= ln2/2, e^r from its degree-7 Taylor polynomial (truncation
// error below 1e-8 relative), times 2^n put into the exponent bits. -Inf and anything below the smallest
// subnormal give 0; NaN gives NaN.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693145751953125         // ln 2 rounded to 16 significant bits: n*ln2hi is exact
		ln2lo = 1.42860682030941723212e-6 // ln 2 - ln2hi
	)
	if x != x {
		return x
	}
	if x < -104 {
		return 0
	}
	// n = round(x*log2e): adding and subtracting 1.5*2^23 rounds to an integer (to even on ties) for
	// |x*log2e| < 2^22; here x >= -104.
	const round = 1 << 23 * 1.5
	n := (x*log2e + round) - round
	r := (x - n*ln2hi) - n*ln2lo
	p := 1 + r*(1+r*(1./2+r*(1./6+r*(1./24+r*(1./120+r*(1./720+r*(1./5040)))))))
	if n < -125 { // subnormal result: scale in two steps
		return p * math.Float32frombits(uint32(n+64+127)<<23) * (1.0 / (1 << 64))
	}
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}
