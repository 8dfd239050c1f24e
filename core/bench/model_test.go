package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/core/nn"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/core/vqvae"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/loader"
)

func openTiny(t *testing.T) (*loader.Checkpoint, *loader.Checkpoint) {
	t.Helper()
	vc, err := loader.Open(testutil.VarTiny("var.pth"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vc.Close() })
	ac, err := loader.Open(testutil.VarTiny("vae.pth"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ac.Close() })
	return vc, ac
}

// The transformer's count for var-tiny (depth 2, C 128, MLP 512, V 64, Cvae 8, patch_nums 1,2,3,4), by
// hand. One image with CFG is 2 rows. Per block and row-token the Linears are 2*C*(3C + C + 2*512) =
// 393216 FLOPs; attention is 4*S*C per row-token with S the keys so far; the head 2*C*V = 16384.
//
//	scale 1 (l 1, S 1):   2*(2*393216 + 2*4*1*128)     + 2*16384    = 1607680
//	  + conditioning 2 rows * 2*C*(2 blocks*6C + 2C) = 917504, + word_embed of 4 tokens 2*4*8*128 = 8192
//	scale 2 (l 4, S 5):   2*(8*393216 + 8*4*5*128)     + 8*16384    = 6463488 + word_embed 9 tokens 18432
//	scale 3 (l 9, S 14):  2*(18*393216 + 18*4*14*128)  + 18*16384   = 14708736 + word_embed 16 tokens 32768
//	scale 4 (l 16, S 30): 2*(32*393216 + 32*4*30*128)  + 32*16384   = 26673152
func TestTransformerFLOPsByHandForTiny(t *testing.T) {
	vc, _ := openTiny(t)
	c, err := varmodel.InferConfig(vc.WeightSource(), varmodel.Options{PatchNums: []int{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{1607680 + 917504 + 8192, 6463488 + 18432, 14708736 + 32768, 26673152}
	if got := TransformerFLOPs(c, 1); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("TransformerFLOPs(tiny, 1 image) = %v, want %v", got, want)
	}
	// Two images double every term.
	for i, f := range TransformerFLOPs(c, 2) {
		if f != 2*want[i] {
			t.Errorf("2 images, scale %d: %d, want %d", i, f, 2*want[i])
		}
	}
}

// The decoder's count for var-tiny's VQVAE (ch 32, ch_mult 1,1,2,2,4, 3 res blocks per decoder level,
// attention at the coarsest level and in mid, Cvae 8; latent 4x4 -> image 64x64), layer by layer.
func TestDecodeFLOPsByHandForTiny(t *testing.T) {
	_, ac := openTiny(t)
	conv := func(co, ci, k, side int64) int64 { return 2 * co * ci * k * k * side * side }
	res := func(ci, co, side int64) int64 {
		f := conv(co, ci, 3, side) + conv(co, co, 3, side)
		if ci != co {
			f += conv(co, ci, 1, side) // nin_shortcut
		}
		return f
	}
	attn := func(c, side int64) int64 {
		hw := side * side
		return conv(3*c, c, 1, side) + conv(c, c, 1, side) + 4*hw*hw*c
	}
	want := conv(8, 8, 3, 4) + // post_quant_conv
		conv(128, 8, 3, 4) + // decoder.conv_in
		res(128, 128, 4) + attn(128, 4) + res(128, 128, 4) + // mid
		3*(res(128, 128, 4)+attn(128, 4)) + conv(128, 128, 3, 8) + // up.4, upsample to 8
		res(128, 64, 8) + 2*res(64, 64, 8) + conv(64, 64, 3, 16) + // up.3, upsample to 16
		3*res(64, 64, 16) + conv(64, 64, 3, 32) + // up.2, upsample to 32
		res(64, 32, 32) + 2*res(32, 32, 32) + conv(32, 32, 3, 64) + // up.1, upsample to 64
		3*res(32, 32, 64) + // up.0
		conv(3, 32, 3, 64) // conv_out
	got, err := DecodeFLOPs(ac.WeightSource(), 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("DecodeFLOPs(tiny) = %d, want %d", got, want)
	}
	// A transformer checkpoint has no decoder: an error naming the missing tensor, not a count of 0.
	vc, _ := openTiny(t)
	if _, err := DecodeFLOPs(vc.WeightSource(), 4, 1); err == nil {
		t.Fatal("DecodeFLOPs of a checkpoint without a decoder succeeded")
	}
}

// RunModel's parts must add up: the scales' transformer times, the decode and the previews are disjoint
// parts of the total, and every scale is reported.
func TestRunModelPartsAddUp(t *testing.T) {
	vc, ac := openTiny(t)
	b := cpu.New(0)
	p, err := varmodel.LoadPipeline(vc.WeightSource(), ac.WeightSource(), b, varmodel.Options{PatchNums: []int{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []varmodel.PreviewMode{varmodel.PreviewNone, varmodel.PreviewFast, varmodel.PreviewFull} {
		previews := mode != varmodel.PreviewNone
		req := varmodel.Request{Labels: []int{3}, CFG: 4, TopK: 900, TopP: 0.95, Previews: mode}
		runs, err := RunModel(context.Background(), b, p, ModelOptions{Request: req, Reps: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 2 {
			t.Fatalf("%d runs, want 2", len(runs))
		}
		for _, r := range runs {
			if len(r.Scales) != 4 {
				t.Fatalf("%d scales timed, want 4", len(r.Scales))
			}
			var sum float64
			for _, s := range r.Scales {
				sum += s.Seconds()
			}
			if d := sum - r.Transformer.Seconds(); d > 1e-9 || d < -1e-9 {
				t.Errorf("scales sum to %gs, transformer %gs", sum, r.Transformer.Seconds())
			}
			parts := r.Transformer + r.Decode + r.Preview
			if r.Decode <= 0 || parts > r.Total || (previews != (r.Preview > 0)) {
				t.Errorf("previews %v: total %v, transformer %v, decode %v, preview %v", previews, r.Total, r.Transformer, r.Decode, r.Preview)
			}
		}
		f, err := CountFLOPs(p, ac.WeightSource(), 1, mode)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := NewModelReport(runs, f)
		if err != nil {
			t.Fatal(err)
		}
		// Fast previews decode latents of side 1, 2 and 3 of the tiny model's 4.
		var wantPreview int64
		for _, side := range []int{1, 2, 3} {
			if mode == varmodel.PreviewFull {
				side = 4
			}
			if mode != varmodel.PreviewNone {
				d, err := DecodeFLOPs(ac.WeightSource(), side, 1)
				if err != nil {
					t.Fatal(err)
				}
				wantPreview += d
			}
		}
		if len(rep.PerScaleSeconds) != 4 || rep.GFLOP.Decode <= 0 || f.Preview != wantPreview || rep.Previews != mode.String() {
			t.Errorf("%v: preview FLOPs %d, want %d; report %+v", mode, f.Preview, wantPreview, rep)
		}
		if mode == varmodel.PreviewFast && f.Preview >= f.Decode*3/2 {
			t.Errorf("fast previews count %d FLOPs, more than 1.5 full decodes (%d each)", f.Preview, f.Decode)
		}
	}
	if _, err := RunModel(context.Background(), b, p, ModelOptions{Reps: 0}); err == nil {
		t.Error("RunModel accepted 0 reps")
	}
}

// The loaded decoder's own count (convnet.Coder.DecodeFLOPs, used for layouts DecodeFLOPs does not
// walk) agrees with the checkpoint walk.
func TestCoderDecodeFLOPsAgree(t *testing.T) {
	ac, err := loader.Open(testutil.VarTiny("vae.pth"))
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	m, err := vqvae.Load(core.NewWeights(ac.WeightSource(), cpu.New(1)), []int{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	want, err := DecodeFLOPs(ac.WeightSource(), 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.DecodeFLOPs(4); got != want {
		t.Fatalf("coder count %d, checkpoint walk %d", got, want)
	}
}

// VAR-d36's shared AdaLN linear runs once per block, each with its block's ada_gss in the bias: the same
// products as a linear per block, so the count must not change with the layout.
func TestTableCountsAcrossLayouts(t *testing.T) {
	c := varmodel.Config{Depth: 3, C: 64, Heads: 1, FFN: 256, Cvae: 8, V: 32, Classes: 4, L2NormAttn: true,
		PatchNums: []int{1, 2, 3}, L: 14}
	own := TransformerFLOPs(c, 1)
	c.SharedAdaLN = true
	if shared := TransformerFLOPs(c, 1); fmt.Sprint(shared) != fmt.Sprint(own) {
		t.Fatalf("shared AdaLN %v, own AdaLN %v", shared, own)
	}
	// FlexVAR's table differs from VAR's only in its positions, which are no products: the same blocks,
	// word_embed and head count the same on the same steps.
	fc := flexvar.Config{AdaLNConfig: nn.AdaLNConfig{Depth: 3, C: 64, Heads: 1, FFN: 256, L2NormAttn: true},
		Cvae: 8, V: 32, Classes: 4, PosH: 8, PosW: 8}
	if flex := StepFLOPs(flexvar.Tensors(fc), 3, 64, []int{1, 4, 9}, 1); fmt.Sprint(flex) != fmt.Sprint(own) {
		t.Fatalf("FlexVAR %v, VAR %v", flex, own)
	}
}
