package backendtest

import (
	"fmt"
	"math/rand"

	"github.com/webvar/webvar/core"
)

// Rows for Linear with quantized weights (core.QuantHost). Both backends get the same quantization of
// the same random weight (Quantize is deterministic), so the rows compare the kernels, not the
// quantization error: the tolerance is float Linear's. K straddles the 32-wide scale blocks and the
// kernel's 16-wide K slices; N and M straddle the 64x64 tiles.
func quantCases() []Case {
	var cs []Case
	for _, s := range []core.QuantScheme{core.QuantInt8, core.QuantInt4} {
		cs = append(cs,
			quantLinearCase(s, "1x1x1", []int{1, 1}, 1, false, nil),
			quantLinearCase(s, "7x13x17-bias", []int{7, 17}, 13, true, nil),
			quantLinearCase(s, "65x129x33", []int{65, 33}, 129, false, nil),
			quantLinearCase(s, "65x129x33-bias", []int{65, 33}, 129, true, nil),
			quantLinearCase(s, "2x37x70-45-bias", []int{2, 37, 70}, 45, true, nil), // 3-D x
			quantLinearCase(s, "3x200x1000", []int{3, 1000}, 200, false, nil),      // skinny N, long K
			quantLinearCase(s, "130x97x64-bias", []int{130, 64}, 97, true, nil),    // K a block multiple
			quantLinearCase(s, "9x70x100-zero-blocks", []int{9, 100}, 70, false, zeroBlocksAndOutliers),
		)
		// The converter's quantization (webvar convert): searched scales rounded to float16, and codes
		// down to -MaxCode-1 (-128, -8), which plain absmax rounding never makes.
		c := quantLinearCase(s, "65x129x33-searched", []int{65, 33}, 129, true, nil)
		c.Upload = quantUpload(s, core.QuantizeOptions{Search: true, F16Scales: true})
		cs = append(cs, c)
	}
	return cs
}

// quantLinearCase is linearCase with w [M, K] quantized with s (after edit changes its values, if set).
func quantLinearCase(s core.QuantScheme, dims string, xShape []int, M int, bias bool, edit func(w core.HostTensor)) Case {
	c := linearCase(fmt.Sprintf("linear-%v-%s", s, dims), xShape, M, bias)
	if edit != nil {
		inputs := c.Inputs
		c.Inputs = func(r *rand.Rand) []core.HostTensor {
			ins := inputs(r)
			edit(ins[1])
			return ins
		}
	}
	c.Upload = quantUpload(s, core.QuantizeOptions{})
	return c
}

// quantUpload uploads a Linear case's inputs (x, w, optional bias) with w quantized by
// core.QuantizeWith(w, s, opt).
func quantUpload(s core.QuantScheme, opt core.QuantizeOptions) func(b core.Backend, ins []core.HostTensor) ([]*core.Tensor, error) {
	return func(b core.Backend, ins []core.HostTensor) ([]*core.Tensor, error) {
		q, err := core.QuantizeWith(ins[1], s, opt)
		if err != nil {
			return nil, err
		}
		w, err := core.UploadQuant(b, q)
		if err != nil {
			return nil, err
		}
		ts := make([]*core.Tensor, len(ins)) // x, w, optional bias
		for i, h := range ins {
			if i == 1 {
				ts[i] = w
			} else if ts[i], err = b.Upload(h); err != nil {
				return nil, err
			}
		}
		return ts, nil
	}
}

// zeroBlocksAndOutliers zeroes whole scale blocks (every third block: scale 0) and plants an outlier in
// others (a block whose other codes round to small values), the two corners of absmax scaling.
func zeroBlocksAndOutliers(w core.HostTensor) {
	K := w.Shape[1]
	for m := range w.Shape[0] {
		for blk := range core.QuantBlocks(K) {
			lo, hi := blk*core.QuantBlock, min((blk+1)*core.QuantBlock, K)
			switch (m + blk) % 3 {
			case 0:
				clear(w.Data[m*K+lo : m*K+hi])
			case 1:
				w.Data[m*K+lo] *= 40
			}
		}
	}
}
