package varmodel

import (
	"fmt"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/vqvae"
)

// LoadPipeline builds the transformer from varSrc and the VQVAE from vaeSrc on backend b. The VQVAE uses
// the transformer's patch_nums.
func LoadPipeline(varSrc, vaeSrc core.WeightSource, b core.Backend, opt Options) (*Pipeline, error) {
	v, err := Load(core.NewWeights(varSrc, b), opt)
	if err != nil {
		return nil, err
	}
	vw := core.NewWeights(vaeSrc, b)
	vae, err := vqvae.Load(vw, v.Config().PatchNums)
	if err != nil {
		return nil, err
	}
	if un := vw.Unused(); len(un) > 0 {
		return nil, fmt.Errorf("vqvae: %w", &core.WeightError{Tensor: un[0],
			Msg: fmt.Sprintf("unexpected in a VQVAE checkpoint (%d unknown tensors)", len(un))})
	}
	return NewPipeline(v, vae)
}
