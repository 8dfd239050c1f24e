package core

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Quantized weights for Linear. A quantized weight is a *Tensor of logical shape [M, K] whose storage is the
// backend's quantized storage (made by QuantUploader.UploadQuant); each backend's Linear recognises it and
// computes y = x @ dequant(w)^T + b, so models need no change.
//
// Format (QuantHost, shared by every backend and by the weights converter): symmetric, blockwise along K.
// Each row of w is cut into blocks of QuantBlock consecutive weights (the last block of a row zero-padded),
// and each block has one float32 scale: w[m, k] = code[m, k] * scale[m, k/QuantBlock]. Codes are signed
// integers packed little-end-first into uint32 words, row-major, every row occupying whole blocks, so a
// row starts on a word boundary and a block is a whole number of words (8 for int8, 4 for int4):
//
//	int8: 4 codes per word, byte j of word w is element 4w+j, two's complement (-128..127; Quantize
//	      makes -127..127)
//	int4: 8 codes per word, nibble j (low nibble first) of word w is element 8w+j, two's complement
//	      (-8..7; Quantize makes -7..7)
//
// Scales are [M, ceil(K/QuantBlock)] row-major.

// QuantScheme is the code width of a quantized weight. The zero value is invalid, so a forgotten field of
// a decoded header is caught by Validate.
type QuantScheme uint8

const (
	QuantInt8 QuantScheme = 1 // 8-bit codes, scale = absmax/127
	QuantInt4 QuantScheme = 2 // 4-bit codes, scale = absmax/7
)

// QuantBlock is the number of consecutive weights along K that share one scale.
const QuantBlock = 32

const (
	quantWordBits = 32
	int8PerWord   = quantWordBits / 8 // codes per uint32 word
	int4PerWord   = quantWordBits / 4
)

// A block must be a whole number of words for both schemes (rows start on word boundaries): these
// constants overflow, a compile error, otherwise.
const (
	_ uint = -(QuantBlock % int8PerWord)
	_ uint = -(QuantBlock % int4PerWord)
)

func (s QuantScheme) String() string {
	switch s {
	case QuantInt8:
		return "int8"
	case QuantInt4:
		return "int4"
	}
	return fmt.Sprintf("QuantScheme(%d)", uint8(s))
}

// Valid reports whether s is a known scheme.
func (s QuantScheme) Valid() bool { return s == QuantInt8 || s == QuantInt4 }

// Bits is the width of one code: 8 or 4 (0 for an invalid scheme).
func (s QuantScheme) Bits() int {
	switch s {
	case QuantInt8:
		return 8
	case QuantInt4:
		return 4
	}
	return 0
}

// CodesPerWord is the number of codes packed into one uint32: 4 or 8 (0 for an invalid scheme).
func (s QuantScheme) CodesPerWord() int {
	if b := s.Bits(); b > 0 {
		return quantWordBits / b
	}
	return 0
}

// MaxCode is the largest code magnitude Quantize produces: 127 or 7 (0 for an invalid scheme). The range
// is symmetric, so the most negative code (-128, -8) is never produced, though it decodes.
func (s QuantScheme) MaxCode() int {
	if b := s.Bits(); b > 0 {
		return 1<<(b-1) - 1
	}
	return 0
}

// QuantBlocks is the number of scale blocks of a row of K weights: ceil(K / QuantBlock).
func QuantBlocks(K int) int { return (K + QuantBlock - 1) / QuantBlock }

// WordsPerRow is the number of code words of one row of K weights (whole blocks); 0 for an invalid scheme.
func (s QuantScheme) WordsPerRow(K int) int {
	if cpw := s.CodesPerWord(); cpw > 0 {
		return QuantBlocks(K) * (QuantBlock / cpw)
	}
	return 0
}

// QuantHost is a quantized [M, K] weight in host memory (see the format above).
type QuantHost struct {
	Scheme QuantScheme
	Shape  Shape     // [M, K]
	Codes  []uint32  // [M, WordsPerRow(K)] packed codes
	Scales []float32 // [M, QuantBlocks(K)]
}

// QuantError reports a malformed quantized weight or a weight that cannot be quantized. Field names the
// part at fault ("scheme", "shape", "codes", "scales", "w") so that callers (the converter, loaders) can
// tell a truncated codes chunk from a bad header without parsing the message.
type QuantError struct {
	Field string
	Msg   string
}

func (e *QuantError) Error() string { return "quantized weight: " + e.Field + ": " + e.Msg }

func quantErr(field, format string, args ...any) error {
	return &QuantError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// dims returns M and K after checking the rank and the signs of the dimensions, and that the packed sizes
// fit in an int (a corrupt header could otherwise make them wrap around to a plausible length).
func (q QuantHost) dims() (M, K int, err error) {
	if !q.Scheme.Valid() {
		return 0, 0, quantErr("scheme", "unknown scheme %v (want %v or %v)", q.Scheme, QuantInt8, QuantInt4)
	}
	if len(q.Shape) != 2 {
		return 0, 0, quantErr("shape", "shape %v, want [M, K]", q.Shape)
	}
	M, K = q.Shape[0], q.Shape[1]
	if M < 0 || K < 0 {
		return 0, 0, quantErr("shape", "negative dimension in %v", q.Shape)
	}
	if K > math.MaxInt-QuantBlock {
		return 0, 0, quantErr("shape", "K = %d too large", K)
	}
	if wpr := q.Scheme.WordsPerRow(K); wpr > 0 && M > math.MaxInt/wpr {
		return 0, 0, quantErr("shape", "%v needs more than MaxInt code words", q.Shape)
	}
	return M, K, nil
}

// Validate checks that q is well formed: a known scheme, shape [M, K] with no negative dimension, exactly
// M*WordsPerRow(K) code words and M*QuantBlocks(K) scales, finite non-negative scales, and zero codes in
// the padding of each row's last block. It returns a *QuantError naming the first problem.
func (q QuantHost) Validate() error {
	M, K, err := q.dims()
	if err != nil {
		return err
	}
	wpr, nb := q.Scheme.WordsPerRow(K), QuantBlocks(K)
	if want := M * wpr; len(q.Codes) != want {
		return quantErr("codes", "%d words for %v %v, want %d (%d per row)", len(q.Codes), q.Scheme, q.Shape, want, wpr)
	}
	if want := M * nb; len(q.Scales) != want {
		return quantErr("scales", "%d scales for %v, want %d (%d per row)", len(q.Scales), q.Shape, want, nb)
	}
	for i, s := range q.Scales {
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) || s < 0 {
			return quantErr("scales", "scale[%d, %d] = %v, want finite and >= 0", i/nb, i%nb, s)
		}
	}
	// Padding codes must be zero: kernels multiply them by zero-padded activations anyway, but a non-zero
	// pad means the writer packed with a different K than the shape says.
	if nb*QuantBlock > K {
		for m := range M {
			row := q.Codes[m*wpr : (m+1)*wpr]
			for k := K; k < nb*QuantBlock; k++ {
				if c := q.code(row, k); c != 0 {
					return quantErr("codes", "row %d: padding code at k = %d is %d, want 0 (K = %d)", m, k, c, K)
				}
			}
		}
	}
	return nil
}

// Code returns the code of element k of row m (q must be valid, m and k in range).
func (q QuantHost) Code(m, k int) int32 {
	wpr := q.Scheme.WordsPerRow(q.Shape[1])
	return q.code(q.Codes[m*wpr:(m+1)*wpr], k)
}

// code decodes element k of a packed row. Shifting the code to the top of the word and back down
// arithmetically sign-extends it.
func (q QuantHost) code(row []uint32, k int) int32 {
	bits := q.Scheme.Bits()
	cpw := quantWordBits / bits
	word := row[k/cpw]
	j := k % cpw
	return int32(word<<(quantWordBits-bits*(j+1))) >> (quantWordBits - bits)
}

// DequantizeRow writes row m of the dequantized weight into dst[:K]: dst[k] = float32(code) * scale, the
// product rounded to float32 exactly as every backend computes it. q must be valid and dst at least K long.
func (q QuantHost) DequantizeRow(m int, dst []float32) {
	q.DequantizeRange(m, 0, q.Shape[1], dst)
}

// DequantizeRange writes elements k0..k1-1 of row m of the dequantized weight into dst[:k1-k0], each
// exactly as DequantizeRow computes it. q must be valid, 0 <= k0 <= k1 <= K and dst at least k1-k0 long.
func (q QuantHost) DequantizeRange(m, k0, k1 int, dst []float32) {
	q.DequantizeStrided(m, k0, k1, dst, 1)
}

// DequantizeStrided is DequantizeRange writing element k to dst[(k-k0)*stride] (stride >= 1), e.g. one row
// of a panel that interleaves several rows. dst must be at least (k1-k0-1)*stride+1 long.
func (q QuantHost) DequantizeStrided(m, k0, k1 int, dst []float32, stride int) {
	K := q.Shape[1]
	wpr, nb := q.Scheme.WordsPerRow(K), QuantBlocks(K)
	row := q.Codes[m*wpr : (m+1)*wpr]
	scales := q.Scales[m*nb : (m+1)*nb]
	if k1 > k0 {
		dst = dst[:(k1-k0-1)*stride+1]
	}
	k := k0
	// Whole words at a time where the range covers them (the hot path of the CPU backend's quantized
	// Linear); a word never straddles a block, so one scale serves all of its codes.
	switch q.Scheme {
	case QuantInt8:
		for ; k < k1 && k%int8PerWord != 0; k++ {
			dst[(k-k0)*stride] = float32(q.code(row, k)) * scales[k/QuantBlock]
		}
		for ; k+int8PerWord <= k1; k += int8PerWord {
			w, s, i := row[k/int8PerWord], scales[k/QuantBlock], (k-k0)*stride
			d := dst[i : i+3*stride+1]
			d[0] = float32(int8(w)) * s
			d[stride] = float32(int8(w>>8)) * s
			d[2*stride] = float32(int8(w>>16)) * s
			d[3*stride] = float32(int8(w>>24)) * s
		}
	case QuantInt4:
		for ; k < k1 && k%int4PerWord != 0; k++ {
			dst[(k-k0)*stride] = float32(q.code(row, k)) * scales[k/QuantBlock]
		}
		for ; k+int4PerWord <= k1; k += int4PerWord {
			w, s, i := row[k/int4PerWord], scales[k/QuantBlock], (k-k0)*stride
			d := dst[i : i+7*stride+1]
			for j := range int4PerWord {
				d[j*stride] = float32(int32(w<<(28-4*j))>>28) * s
			}
		}
	}
	for ; k < k1; k++ {
		dst[(k-k0)*stride] = float32(q.code(row, k)) * scales[k/QuantBlock]
	}
}

// Dequantize returns the float weight q stands for.
func (q QuantHost) Dequantize() (HostTensor, error) {
	if err := q.Validate(); err != nil {
		return HostTensor{}, err
	}
	M, K := q.Shape[0], q.Shape[1]
	out := make([]float32, M*K)
	for m := range M {
		q.DequantizeRow(m, out[m*K:(m+1)*K])
	}
	return HostTensor{Shape: q.Shape.Clone(), Data: out}, nil
}

// Quantize quantizes w [M, K] with symmetric absmax scaling per block: scale = max|w| / MaxCode over the
// block, code = round(w / scale) (half away from zero) clamped to [-MaxCode, MaxCode]; an all-zero block
// gets scale 0 and codes 0. Each element then dequantizes to within scale/2 of w. Non-finite weights are
// an error (they would make the block's scale NaN or Inf). It is QuantizeWith with the zero options.
func Quantize(w HostTensor, s QuantScheme) (QuantHost, error) {
	return QuantizeWith(w, s, QuantizeOptions{})
}

// QuantizeOptions refines how QuantizeWith chooses each block's scale. The zero value is Quantize's
// plain absmax rounding.
type QuantizeOptions struct {
	// Search chooses each block's scale to minimise the block's squared error instead of taking
	// max|w|/MaxCode: it tries scales around the absmax one (relative steps of 1% up to ±15%, and
	// max|w|/(MaxCode+1), which lets a block's most negative weight take the code -MaxCode-1 the format
	// allows), fits the least-squares scale to each candidate's codes, re-rounds the codes to it and keeps
	// the lowest error; the absmax scale is one of the candidates, so a block is never worse than with
	// Quantize. Codes then span [-MaxCode-1, MaxCode]. A block that already is a scale times codes
	// (a weight quantized before) keeps its values exactly.
	Search bool
	// F16Scales rounds every scale to a float16 value before the block's codes are chosen, so that the
	// weights format can store the scales in 2 bytes instead of 4 (QuantHost.F16Scales) at no further
	// cost. A weight with a non-zero scale outside float16's normal range (below 2^-14, where float16
	// loses relative precision, or above 65504) keeps float32 scales throughout, and so does, with
	// Search, a weight quantized before with float32 scales, whose values Search keeps.
	F16Scales bool
}

// f16MinNormal is the smallest normal float16 value, 2^-14.
const f16MinNormal = 1.0 / (1 << 14)

// F16ScalesFit reports whether every non-zero block scale of w, quantized plainly with s, lies in
// float16's normal range, which is when QuantizeWith honours QuantizeOptions.F16Scales. Search moves a
// scale by at most 15% and rounding to float16 by 2^-11, so the absmax scale decides. w must be [M, K].
func F16ScalesFit(w HostTensor, s QuantScheme) bool {
	if len(w.Shape) != 2 || !s.Valid() || len(w.Data) != w.Shape.Numel() {
		return false
	}
	M, K := w.Shape[0], w.Shape[1]
	lo, hi := f16MinNormal*1.25*float64(s.MaxCode()), 60000.0*float64(s.MaxCode())
	for m := range M {
		row := w.Data[m*K : (m+1)*K]
		for b := 0; b < K; b += QuantBlock {
			absMax := 0.0
			for _, v := range row[b:min(b+QuantBlock, K)] {
				absMax = math.Max(absMax, math.Abs(float64(v)))
			}
			if absMax != 0 && (absMax < lo || absMax > hi) {
				return false
			}
		}
	}
	return true
}

// F16Scales reports whether every scale of q is exactly a float16 value (zero included), so that the
// weights format may store them in 2 bytes without changing the weight.
func (q QuantHost) F16Scales() bool {
	for _, s := range q.Scales {
		h, ok := F32ToF16(s)
		if !ok || F16ToF32(h) != s {
			return false
		}
	}
	return true
}

// QuantizeWith quantizes w [M, K] with scheme s, choosing the scales as opt says (Quantize is the plain
// rule). Non-finite weights are an error. Rows are quantized in parallel; the result does not depend on
// the number of goroutines.
func QuantizeWith(w HostTensor, s QuantScheme, opt QuantizeOptions) (QuantHost, error) {
	q := QuantHost{Scheme: s, Shape: w.Shape.Clone()}
	M, K, err := q.dims()
	if err != nil {
		return QuantHost{}, err
	}
	if len(w.Data) != M*K {
		return QuantHost{}, quantErr("w", "%d values for shape %v", len(w.Data), w.Shape)
	}
	for i, v := range w.Data {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return QuantHost{}, quantErr("w", "w[%d, %d] = %v is not finite", i/K, i%K, v)
		}
	}
	if opt.F16Scales && (!F16ScalesFit(w, s) ||
		opt.Search && !quantizedAlready(w, s, true) && quantizedAlready(w, s, false)) {
		opt.F16Scales = false
	}
	q.Codes = make([]uint32, M*s.WordsPerRow(K))
	q.Scales = make([]float32, M*QuantBlocks(K))
	workers := min(runtime.GOMAXPROCS(0), max(1, M*K/(1<<16)))
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			bq := newBlockQuantizer(s, opt)
			for m := g * M / workers; m < (g+1)*M/workers; m++ {
				bq.row(q, m, w.Data[m*K:(m+1)*K])
			}
		})
	}
	wg.Wait()
	return q, nil
}

// quantizedAlready reports whether every block of w [M, K] is exactly a scale (a float16 value with f16,
// else a float32 one) times codes of s: it was quantized before, and Search keeps its values, which
// rounding float32 scales to float16 could not. It stops at the first block that is not, the first one
// for trained weights.
func quantizedAlready(w HostTensor, s QuantScheme, f16 bool) bool {
	bq := newBlockQuantizer(s, QuantizeOptions{Search: true, F16Scales: f16})
	K := w.Shape[1]
	for m := range w.Shape[0] {
		row := w.Data[m*K : (m+1)*K]
		for b := 0; b < K; b += QuantBlock {
			vals := row[b:min(b+QuantBlock, K)]
			absMax := 0.0
			for _, v := range vals {
				absMax = math.Max(absMax, math.Abs(float64(v)))
			}
			if absMax != 0 && bq.exactScale(vals, absMax) == 0 {
				return false
			}
		}
	}
	return true
}

// blockQuantizer quantizes one row at a time; its scratch codes are reused across blocks.
type blockQuantizer struct {
	opt            QuantizeOptions
	lo, hi         float64 // code range
	codes, trial   [QuantBlock]float64
	candidateScale []float64 // multipliers of the absmax scale max|w|/MaxCode to try; the first is 1 (Search)
}

func newBlockQuantizer(s QuantScheme, opt QuantizeOptions) *blockQuantizer {
	maxCode := float64(s.MaxCode())
	bq := &blockQuantizer{opt: opt, lo: -maxCode, hi: maxCode, candidateScale: []float64{1}}
	if opt.Search {
		bq.lo = -maxCode - 1
		for i := -15; i <= 15; i++ {
			if i != 0 {
				bq.candidateScale = append(bq.candidateScale, 1/(1+float64(i)/100))
			}
		}
		bq.candidateScale = append(bq.candidateScale, maxCode/(maxCode+1))
	}
	return bq
}

// roundScale is the scale as stored: float32, or float16 with F16Scales.
func (bq *blockQuantizer) roundScale(scale float64) float64 {
	f := float32(scale)
	if bq.opt.F16Scales {
		h, _ := F32ToF16(f)
		f = F16ToF32(h)
	}
	return float64(f)
}

// encode rounds vals/scale to codes in [lo, hi] (half away from zero) into out and returns the squared
// error of the dequantized values, computed as the backends dequantize (float32 products).
func (bq *blockQuantizer) encode(vals []float32, scale float64, out *[QuantBlock]float64) float64 {
	var sq float64
	s32 := float32(scale)
	for i, v := range vals {
		c := math.Round(float64(v) / scale)
		if c > bq.hi {
			c = bq.hi
		} else if c < bq.lo {
			c = bq.lo
		}
		out[i] = c
		d := float64(v) - float64(float32(c)*s32)
		sq += d * d
	}
	return sq
}

// exactScale returns a scale (as stored) with which every value of vals is exactly a code in [lo, hi]
// times it, or 0 if there is none with absMax on a code's magnitude: a block that was quantized before,
// such as a converted directory's weight converted again, keeps its values. Most blocks fail on their
// first value, so trying every magnitude 1..-lo is cheap.
func (bq *blockQuantizer) exactScale(vals []float32, absMax float64) float64 {
	for c := 1.0; c <= -bq.lo; c++ {
		scale := bq.roundScale(absMax / c)
		if scale == 0 {
			continue
		}
		s32, ok := float32(scale), true
		for _, v := range vals {
			q := math.Round(float64(v) / scale)
			if q < bq.lo || q > bq.hi || float32(q)*s32 != v {
				ok = false
				break
			}
		}
		if ok {
			return scale
		}
	}
	return 0
}

// lsScale rounds vals*inv to codes in [lo, hi] and returns the least-squares scale for those codes,
// sum(v·c)/sum(c²) (0 when every code is 0). It only proposes a scale, which encode then codes exactly.
func (bq *blockQuantizer) lsScale(vals []float32, inv float64) float64 {
	var xq, qq float64
	for _, v := range vals {
		x := float64(v) * inv
		if x > bq.hi {
			x = bq.hi
		} else if x < bq.lo {
			x = bq.lo
		}
		c := math.Round(x)
		xq += float64(v) * c
		qq += c * c
	}
	if qq == 0 || xq <= 0 {
		return 0
	}
	return xq / qq
}

func (bq *blockQuantizer) row(q QuantHost, m int, row []float32) {
	K := len(row)
	wpr, nb, cpw, bits := q.Scheme.WordsPerRow(K), QuantBlocks(K), q.Scheme.CodesPerWord(), q.Scheme.Bits()
	mask := uint32(1)<<bits - 1
	codes := q.Codes[m*wpr : (m+1)*wpr]
	maxCode := float64(q.Scheme.MaxCode())
	for blk := range nb {
		vals := row[blk*QuantBlock : min((blk+1)*QuantBlock, K)]
		absMax := 0.0
		for _, v := range vals {
			absMax = math.Max(absMax, math.Abs(float64(v)))
		}
		base := bq.roundScale(absMax / maxCode)
		if base == 0 { // all zeros (or below the scale's range): codes stay 0
			continue
		}
		best, bestErr := base, bq.encode(vals, base, &bq.codes)
		if bestErr != 0 && bq.opt.Search {
			if exact := bq.exactScale(vals, absMax); exact != 0 {
				best, bestErr = exact, bq.encode(vals, exact, &bq.codes)
			}
		}
		for _, mul := range bq.candidateScale[1:] {
			if bestErr == 0 {
				break
			}
			// Codes of this candidate, then the least-squares scale for them, re-rounded and re-coded.
			scale := bq.roundScale(bq.lsScale(vals, maxCode/(absMax*mul)))
			if scale == 0 || math.IsInf(scale, 0) || scale == best {
				continue
			}
			if e := bq.encode(vals, scale, &bq.trial); e < bestErr {
				best, bestErr = scale, e
				bq.codes = bq.trial
			}
		}
		q.Scales[m*nb+blk] = float32(best)
		for i := range vals {
			k := blk*QuantBlock + i
			codes[k/cpw] |= (uint32(int32(bq.codes[i])) & mask) << (bits * (k % cpw))
		}
	}
}

// QuantStats measures the error quantization introduced into w: the largest absolute difference between
// w and q's dequantized values, and the relative RMS error sqrt(sum (w - dq)^2 / sum w^2) (0 when both are
// all zeros, +Inf when only w is). Both are NaN when q is invalid or does not have w's shape.
func QuantStats(w HostTensor, q QuantHost) (maxAbs, relRMS float64) {
	dq, err := q.Dequantize()
	if err != nil || !w.Shape.Equal(dq.Shape) || len(w.Data) != len(dq.Data) {
		return math.NaN(), math.NaN()
	}
	var errSq, refSq float64
	for i, v := range w.Data {
		d := float64(v) - float64(dq.Data[i])
		maxAbs = math.Max(maxAbs, math.Abs(d))
		errSq += d * d
		refSq += float64(v) * float64(v)
	}
	switch {
	case errSq == 0:
		return maxAbs, 0
	case refSq == 0:
		return maxAbs, math.Inf(1)
	}
	return maxAbs, math.Sqrt(errSq / refSq)
}

// QuantUploader is the optional Backend ability to hold quantized weights: UploadQuant validates q and
// returns a tensor of shape q.Shape that the backend's Linear accepts as w. Other ops do not accept it.
type QuantUploader interface {
	UploadQuant(q QuantHost) (*Tensor, error)
}

// UploadQuant uploads q to b if b can hold quantized weights; otherwise the error wraps ErrUnsupported
// (callers may fall back to uploading q.Dequantize()).
func UploadQuant(b Backend, q QuantHost) (*Tensor, error) {
	qu, ok := b.(QuantUploader)
	if !ok {
		return nil, fmt.Errorf("upload %v %v weight on %s: %w", q.Scheme, q.Shape, b.Name(), ErrUnsupported)
	}
	return qu.UploadQuant(q)
}
