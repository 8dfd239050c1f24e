package core

import (
	"fmt"
	"math"
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
// an error (they would make the block's scale NaN or Inf).
func Quantize(w HostTensor, s QuantScheme) (QuantHost, error) {
	q := QuantHost{Scheme: s, Shape: w.Shape.Clone()}
	M, K, err := q.dims()
	if err != nil {
		return QuantHost{}, err
	}
	if len(w.Data) != M*K {
		return QuantHost{}, quantErr("w", "%d values for shape %v", len(w.Data), w.Shape)
	}
	wpr, nb, cpw, bits := s.WordsPerRow(K), QuantBlocks(K), s.CodesPerWord(), s.Bits()
	maxCode := float64(s.MaxCode())
	mask := uint32(1)<<bits - 1
	q.Codes = make([]uint32, M*wpr)
	q.Scales = make([]float32, M*nb)
	for m := range M {
		row := w.Data[m*K : (m+1)*K]
		codes := q.Codes[m*wpr : (m+1)*wpr]
		for blk := range nb {
			vals := row[blk*QuantBlock : min((blk+1)*QuantBlock, K)]
			absMax := 0.0
			for i, v := range vals {
				f := float64(v)
				if math.IsNaN(f) || math.IsInf(f, 0) {
					return QuantHost{}, quantErr("w", "w[%d, %d] = %v is not finite", m, blk*QuantBlock+i, v)
				}
				absMax = math.Max(absMax, math.Abs(f))
			}
			scale := float32(absMax / maxCode)
			q.Scales[m*nb+blk] = scale
			if scale == 0 { // all zeros (or below float32's range once divided): codes stay 0
				continue
			}
			for i, v := range vals {
				c := math.Round(float64(v) / float64(scale))
				c = math.Max(-maxCode, math.Min(maxCode, c))
				k := blk*QuantBlock + i
				codes[k/cpw] |= (uint32(int32(c)) & mask) << (bits * (k % cpw))
			}
		}
	}
	return q, nil
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
