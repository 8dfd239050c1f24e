// Package varmodel is the VAR transformer (models/var.py and basic_var.py of the official implementation):
// class-conditional next-scale prediction with AdaLN blocks, a KV cache across scales, classifier-free
// guidance and top-k / top-p / Gumbel sampling, plus the pipeline that runs it with the VQVAE.
package varmodel

import (
	"fmt"
	"strings"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// Config is the transformer's architecture, read from the checkpoint (see InferConfig).
type Config struct {
	Depth       int   // number of blocks
	C           int   // width (embed_dim)
	Heads       int   // attention heads; head_dim = C / Heads
	FFN         int   // hidden width of the MLP (mlp_ratio * C)
	Cvae        int   // VQVAE latent channels (word_embed input)
	V           int   // codebook size (head output)
	Classes     int   // class count without the null class used for CFG
	SharedAdaLN bool  // blocks share one AdaLN linear plus a per-block ada_gss (VAR-d36)
	L2NormAttn  bool  // attn_l2_norm: cosine attention with a learned per-head scale
	PatchNums   []int // token map side per scale
	L           int   // total tokens: sum of patch_nums^2
	NormEps     float32
}

// HeadDim is C / Heads.
func (c Config) HeadDim() int { return c.C / c.Heads }

// AdaLN is the shape of the block stack.
func (c Config) AdaLN() nn.AdaLNConfig {
	return nn.AdaLNConfig{Depth: c.Depth, C: c.C, Heads: c.Heads, FFN: c.FFN, SharedAdaLN: c.SharedAdaLN,
		L2NormAttn: c.L2NormAttn, NormEps: c.NormEps}
}

// KnownPatchNums returns the official schedule for L (rows of pos_1LC), or nil.
func KnownPatchNums(l int) []int {
	switch l {
	case 680: // 256x256: var_d16 .. var_d30
		return []int{1, 2, 3, 4, 5, 6, 8, 10, 13, 16}
	case 2240: // 512x512: var_d36
		return []int{1, 2, 3, 4, 6, 9, 13, 18, 24, 32}
	}
	return nil
}

// Options override what the checkpoint cannot say.
type Options struct {
	// PatchNums is required when L is not an official schedule (KnownPatchNums) and the scale count and L do not determine
	// them uniquely.
	PatchNums []int
	// Heads is needed only without l2-norm attention (then no tensor says it); 0 means C/64 (the official
	// width = 64*depth, heads = depth convention).
	Heads int
}

// InferConfig reads the architecture from tensor names and shapes.
func InferConfig(src core.WeightSource, opt Options) (Config, error) {
	shape := func(name string, rank int) (core.Shape, error) {
		s, ok := src.Shape(name)
		if !ok {
			return nil, &core.WeightError{Tensor: name, Msg: "missing from checkpoint (is this a VAR transformer checkpoint?)"}
		}
		if len(s) != rank {
			return nil, &core.WeightError{Tensor: name, Msg: fmt.Sprintf("shape %v, want rank %d", s, rank)}
		}
		return s, nil
	}
	var c Config
	c.NormEps = 1e-6
	we, err := shape("word_embed.weight", 2)
	if err != nil {
		return c, err
	}
	c.C, c.Cvae = we[0], we[1]
	hw, err := shape("head.weight", 2)
	if err != nil {
		return c, err
	}
	c.V = hw[0]
	ce, err := shape("class_emb.weight", 2)
	if err != nil {
		return c, err
	}
	c.Classes = ce[0] - 1
	if c.Classes < 1 {
		return c, &core.WeightError{Tensor: "class_emb.weight", Msg: fmt.Sprintf("%d rows: need the classes plus the null class", ce[0])}
	}
	ac, err := nn.InferAdaLN(src, c.C, opt.Heads)
	if err != nil {
		return c, err
	}
	c.Depth, c.Heads, c.FFN, c.SharedAdaLN, c.L2NormAttn = ac.Depth, ac.Heads, ac.FFN, ac.SharedAdaLN, ac.L2NormAttn
	pos, err := shape("pos_1LC", 3)
	if err != nil {
		return c, err
	}
	c.L = pos[1]
	lv, err := shape("lvl_embed.weight", 2)
	if err != nil {
		return c, err
	}
	ps, err := shape("pos_start", 3)
	if err != nil {
		return c, err
	}
	if c.PatchNums, err = resolvePatchNums(c.L, lv[0], ps[1], opt.PatchNums); err != nil {
		return c, err
	}
	// Every tensor the model reads, with the shape the inferred architecture gives it.
	return c, Tensors(c).Check(src)
}

// resolvePatchNums picks the patch_nums: the explicit ones (checked against L, the scale count and
// first_l), else the official schedule for L, else the unique strictly increasing list of `scales` sides
// starting at sqrt(firstL) whose squares sum to L.
func resolvePatchNums(l, scales, firstL int, explicit []int) ([]int, error) {
	check := func(pn []int, what string) error {
		sum := 0
		for i, p := range pn {
			if p <= 0 || (i > 0 && p <= pn[i-1]) {
				return fmt.Errorf("%s patch_nums %v: sides must be positive and increasing", what, pn)
			}
			sum += p * p
		}
		if sum != l {
			return fmt.Errorf("%s patch_nums %v have %d tokens, the checkpoint's pos_1LC has L = %d", what, pn, sum, l)
		}
		if len(pn) != scales {
			return fmt.Errorf("%s patch_nums %v have %d scales, the checkpoint's lvl_embed has %d", what, pn, len(pn), scales)
		}
		if pn[0]*pn[0] != firstL {
			return fmt.Errorf("%s patch_nums %v start with %d tokens, the checkpoint's pos_start has %d", what, pn, pn[0]*pn[0], firstL)
		}
		return nil
	}
	if len(explicit) > 0 {
		if err := check(explicit, "given"); err != nil {
			return nil, err
		}
		return append([]int(nil), explicit...), nil
	}
	if pn := KnownPatchNums(l); pn != nil && check(pn, "official") == nil {
		return pn, nil
	}
	found := findPatchNums(l, scales, firstL, 2)
	if len(found) == 1 {
		return found[0], nil
	}
	var cands []string
	for _, f := range found {
		cands = append(cands, fmt.Sprint(f))
	}
	msg := "none fits"
	if len(found) > 1 {
		msg = "several fit, e.g. " + strings.Join(cands, " and ")
	}
	return nil, fmt.Errorf("cannot infer patch_nums for L = %d with %d scales (%s): give them explicitly (-patch-nums 1,2,3,...)", l, scales, msg)
}

// findPatchNums enumerates strictly increasing lists of n sides, the first being sqrt(firstL), whose squares
// sum to l; it stops after limit results.
func findPatchNums(l, n, firstL, limit int) [][]int {
	first := 0
	for first*first < firstL {
		first++
	}
	if first*first != firstL || n < 1 {
		return nil
	}
	var out [][]int
	cur := []int{first}
	var rec func(rem int)
	rec = func(rem int) {
		if len(out) >= limit {
			return
		}
		k := n - len(cur)
		if k == 0 {
			if rem == 0 {
				out = append(out, append([]int(nil), cur...))
			}
			return
		}
		prev := cur[len(cur)-1]
		for p := prev + 1; ; p++ {
			// The smallest possible remainder with p next: p^2 + (p+1)^2 + ... (k terms).
			minRest := 0
			for j := 0; j < k; j++ {
				minRest += (p + j) * (p + j)
			}
			if minRest > rem {
				return
			}
			cur = append(cur, p)
			rec(rem - p*p)
			cur = cur[:len(cur)-1]
		}
	}
	rec(l - firstL)
	return out
}
