// Package flexvar is FlexVAR (jiaosiyu1999/FlexVAR, models/flexvar.py and models/vq_llama.py): next-scale
// prediction without residuals. Each step predicts the token map of the whole image at its own grid size
// (ground truth, not a residual): no f_hat accumulation, no Phi, no level embedding. Positions come from a
// learned 32x32 grid area-resized to every step's grid, the next step's input is the bicubic-resized
// l2-normalised codes of the current step, and only the last step's tokens are decoded, by a LlamaGen
// VQ-16 tokenizer. Any increasing schedule of grids runs: fewer steps for speed, more for quality,
// grids above the training size for larger images, and h x w grids for other aspect ratios (a
// host-side extension of the official square schedules).
//
// The transformer blocks are VAR's (core/nn AdaLNStack: AdaLN, l2-norm attention, tanh GELU, KV cache).
package flexvar

import (
	"fmt"
	"math"
	"slices"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// Config is the transformer's architecture, read from the checkpoint (InferConfig).
type Config struct {
	nn.AdaLNConfig
	Cvae       int // codebook vector width (word_embed input)
	V          int // codebook size (head output)
	Classes    int // class count without the null class used for CFG
	PosH, PosW int // side of the learned position grid pos_1LC (32 x 32 in the releases)
}

// TrainedSides are the square grid sides FlexVAR samples at (official autoregressive_infer_cfg): any
// other side, and any side above Request.MaxPN, is decoded greedily (top-k 1).
var TrainedSides = []int{1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 23, 24, 32}

// DefaultSchedule is the official 10-step schedule for 256 px (16 x 16 tokens).
var DefaultSchedule = []int{1, 2, 3, 4, 5, 6, 8, 10, 13, 16}

// Detect reports whether src holds a FlexVAR transformer: VAR's blocks with a 2-D position grid
// pos_1LC [1, C, H, W] and no level embedding.
func Detect(src core.WeightSource) bool {
	ps, ok := src.Shape("pos_1LC")
	_, lvl := src.Shape("lvl_embed.weight")
	_, blocks := src.Shape("blocks.0.attn.mat_qkv.weight")
	return ok && len(ps) == 4 && !lvl && blocks
}

// InferConfig reads the architecture from tensor names and shapes. heads is needed only without l2-norm
// attention (0: C/64).
func InferConfig(src core.WeightSource, heads int) (Config, error) {
	var c Config
	shape := func(name string, rank int) (core.Shape, error) {
		s, ok := src.Shape(name)
		if !ok {
			return nil, &core.WeightError{Tensor: name, Msg: "missing from checkpoint (is this a FlexVAR transformer checkpoint?)"}
		}
		if len(s) != rank {
			return nil, &core.WeightError{Tensor: name, Msg: fmt.Sprintf("shape %v, want rank %d", s, rank)}
		}
		return s, nil
	}
	we, err := shape("word_embed.weight", 2)
	if err != nil {
		return c, err
	}
	C := we[0]
	c.Cvae = we[1]
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
	pos, err := shape("pos_1LC", 4)
	if err != nil {
		return c, err
	}
	if pos[0] != 1 || pos[1] != C || pos[2] < 1 || pos[3] < 1 {
		return c, &core.WeightError{Tensor: "pos_1LC", Msg: fmt.Sprintf("shape %v, want [1, %d, H, W]", pos, C)}
	}
	c.PosH, c.PosW = pos[2], pos[3]
	if c.AdaLNConfig, err = nn.InferAdaLN(src, C, heads); err != nil {
		return c, err
	}
	// Every tensor the model reads, with the shape the inferred architecture gives it.
	return c, Tensors(c).Check(src)
}

// Grid is one step's token map: H rows of W tokens.
type Grid struct{ H, W int }

// N is the step's token count.
func (g Grid) N() int { return g.H * g.W }

// Side is the larger side, what the official rules (max_pn, the trained sides) compare for a square grid.
func (g Grid) Side() int { return max(g.H, g.W) }

func (g Grid) String() string {
	if g.H == g.W {
		return fmt.Sprint(g.H)
	}
	return fmt.Sprintf("%dx%d", g.H, g.W)
}

// Square is the schedule of square grids with the given sides.
func Square(sides []int) []Grid {
	g := make([]Grid, len(sides))
	for i, s := range sides {
		g[i] = Grid{s, s}
	}
	return g
}

// Aspect turns square sides into grids of aspect ratio w:h with about the same token count each:
// H = round(side*sqrt(h/w)), W = round(side*sqrt(w/h)), at least 1, each grid strictly larger than the
// one before in both sides or in one (a step must add tokens). The first grid stays 1 x 1 (the start
// token). This is webvar's extension: the official code runs square schedules only.
func Aspect(sides []int, w, h int) ([]Grid, error) {
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("aspect %d:%d: want positive sides", w, h)
	}
	r := math.Sqrt(float64(w) / float64(h))
	out := make([]Grid, len(sides))
	for i, s := range sides {
		g := Grid{max(1, int(math.Round(float64(s)/r))), max(1, int(math.Round(float64(s)*r)))}
		if i == 0 {
			g = Grid{1, 1}
		}
		out[i] = g
	}
	return out, CheckSchedule(out)
}

// CheckSchedule accepts a schedule that starts with 1 x 1 (the class token's step) and grows: no side
// shrinks and every step adds tokens.
func CheckSchedule(s []Grid) error {
	if len(s) == 0 {
		return fmt.Errorf("empty schedule")
	}
	if s[0] != (Grid{1, 1}) {
		return fmt.Errorf("schedule %v starts at %v: the first step must be 1 (the class token's step)", s, s[0])
	}
	for i := 1; i < len(s); i++ {
		if s[i].H < s[i-1].H || s[i].W < s[i-1].W || s[i].N() <= s[i-1].N() {
			return fmt.Errorf("schedule %v: step %d (%v) does not grow from %v", s, i, s[i], s[i-1])
		}
	}
	return nil
}

// sampled reports whether the official rules sample a step of grid g (otherwise it is greedy): both
// sides among TrainedSides and not above maxPN.
func sampled(g Grid, maxPN int) bool {
	return g.Side() <= maxPN && slices.Contains(TrainedSides, g.H) && slices.Contains(TrainedSides, g.W)
}
