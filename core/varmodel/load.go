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
	if err := vw.CheckAllUsed("a VQVAE checkpoint"); err != nil {
		return nil, fmt.Errorf("vqvae: %w", err)
	}
	return NewPipeline(v, vae)
}
