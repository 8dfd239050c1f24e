package randmodel

import (
	"math"
	"strings"

	"github.com/webvar/webvar/core/tensortable"
)

// fromTable gives every tensor of a family's table its distribution.
func fromTable(t tensortable.Table, values func(tensortable.Spec) Tensor) []Tensor {
	out := make([]Tensor, len(t))
	for i, s := range t {
		out[i] = values(s)
	}
	return out
}

// adaLNValues is the distribution of a tensor of a VAR-style transformer (VAR, FlexVAR). The scales keep
// activations of a deep random model finite and sampling non-degenerate: Linear weights have std
// 1/sqrt(fan_in) (unit gain), the AdaLN linears a tenth of that (modulations near their biases, as in
// a trained model's early layers), embeddings and biases are small, zero_k_bias is zeros as in the
// official checkpoints, and the l2-norm attention's per-head scale is log(U(6, 30)): temperatures of
// the magnitude trained models learn (a normal draw could make one unrealistically small).
func adaLNValues(s tensortable.Spec) Tensor {
	t := Tensor{Name: s.Name, Shape: s.Shape}
	switch {
	case strings.HasSuffix(s.Name, "attn.scale_mul_1H11"):
		t.LogUniform, t.Lo, t.Hi = true, 6, 30
	case strings.HasSuffix(s.Name, "attn.zero_k_bias"):
	case s.Quantizable:
		t.Std = 1 / math.Sqrt(float64(s.Shape[1]))
		if strings.Contains(s.Name, "ada_lin.1.") {
			t.Std *= 0.1
		}
	default:
		t.Std = 0.02
	}
	return t
}

// linearNormValues is the distribution of a tensor of a pre-LN transformer (MAR, RQ) with table t:
// Linear weights with std 1/sqrt(fan_in), so that activations keep their scale through the depth, and
// biases of std 0.02; LayerNorm affines near identity (weight 1 ± 0.05, bias ± 0.05); embeddings and
// positions of std 0.02. A 1-D weight or bias beside no Linear weight is a LayerNorm's.
func linearNormValues(t tensortable.Table) func(tensortable.Spec) Tensor {
	linear := t.Quantizer()
	return func(s tensortable.Spec) Tensor {
		v := Tensor{Name: s.Name, Shape: s.Shape, Std: 0.02}
		stem, isBias := strings.CutSuffix(s.Name, ".bias")
		stem, isWeight := strings.CutSuffix(stem, ".weight")
		switch {
		case linear(s.Name):
			v.Std = 1 / math.Sqrt(float64(s.Shape[1]))
		case isBias && linear(stem+".weight"):
		case len(s.Shape) == 1 && isWeight:
			v.Std, v.Mean = 0.05, 1
		case len(s.Shape) == 1 && isBias:
			v.Std = 0.05
		}
		return v
	}
}
