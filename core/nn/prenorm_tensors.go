package nn

import (
	"fmt"

	"github.com/webvar/webvar/core/tensortable"
)

// PreNormTensors is the checkpoint layout of a pre-LN block stack under prefix.N. with key names k, as
// LoadPreNormStack reads it. Use is left to the family (tensortable.Uncounted): MAR counts its
// arithmetic itself.
func PreNormTensors(prefix string, k PreNormKeys, c PreNormConfig) tensortable.Table {
	var t tensortable.Table
	for i := range c.Depth {
		p := fmt.Sprintf("%s.%d.", prefix, i)
		t = append(t, LayerNormTensors(p+k.Norm1, c.C)...)
		t = append(t, LinearTensors(p+k.QKV, 3*c.C, c.C, true)...)
		t = append(t, LinearTensors(p+k.Proj, c.C, c.C, true)...)
		t = append(t, LayerNormTensors(p+k.Norm2, c.C)...)
		t = append(t, LinearTensors(p+k.FC1, c.FFN, c.C, true)...)
		t = append(t, LinearTensors(p+k.FC2, c.C, c.FFN, true)...)
	}
	return t
}

// LinearTensors is a Linear layer's weight [out, in] (quantizable) and, withBias, its bias [out], as
// LoadLinear reads them.
func LinearTensors(name string, out, in int, withBias bool) tensortable.Table {
	t := tensortable.Table{{Name: name + ".weight", Shape: []int{out, in}, Quantizable: true}}
	if withBias {
		t = append(t, tensortable.Spec{Name: name + ".bias", Shape: []int{out}})
	}
	return t
}

// LayerNormTensors is an affine LayerNorm's weight and bias, each [c], as LoadLayerNorm reads them.
func LayerNormTensors(name string, c int) tensortable.Table {
	return tensortable.Table{{Name: name + ".weight", Shape: []int{c}}, {Name: name + ".bias", Shape: []int{c}}}
}
