//go:build !js

// The fixture files are read from testdata, which a browser test binary cannot reach.

package webgpu

import (
	"context"
	"fmt"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/varmodel"
	"github.com/webvar/webvar/internal/testutil"
)

// The var-tiny fixture end to end on the GPU: greedy tokens identical to the official ones, images and
// per-scale tensors within golden.md's tolerance.
func TestVarTinyGreedyOnWebGPU(t *testing.T) {
	b := newTestBackend(t)
	// No guard regions here: they flush at every allocation, and this test must exercise the batched
	// recording of a whole scale into one submission.
	b.guard = 0
	p, err := varmodel.LoadPipeline(testutil.Source(t, testutil.VarTiny("var.pth")), testutil.Source(t, testutil.VarTiny("vae.pth")), b, varmodel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := testutil.OpenGolden(t, testutil.VarTiny("golden.safetensors"))
	for _, run := range []string{"ar0", "ar1", "ar2"} {
		t.Run(run, func(t *testing.T) {
			o := core.NewOps(b)
			taps := map[string]core.HostTensor{}
			o.OnTap = func(name string, x *core.Tensor) { taps[name] = o.Download(x) }
			req := varmodel.Request{Labels: g.Ints(run + ".label_B"), CFG: float64(g.F32(run + ".cfg").Data[0]), TopK: 1}
			res, err := p.Run(context.Background(), o, req, nil)
			if err != nil {
				t.Fatal(err)
			}
			for si := 0; si < 4; si++ {
				name := fmt.Sprintf("%s.idx.s%d", run, si)
				testutil.IntsEqual(t, name, res.Tokens[si], g.Ints(name))
				for _, n := range []string{"logits_raw", "f_hat", "block1.out"} {
					if name := fmt.Sprintf("%s.s%d.%s", run, si, n); g.Has(name) {
						testutil.RelClose(t, name, taps[fmt.Sprintf("ar.s%d.%s", si, n)].Data, g.F32(name).Data, 1e-4)
					}
				}
			}
			testutil.RelClose(t, run+".img", res.Images.Data, g.F32(run+".img").Data, 1e-4)
		})
	}
}
