package varmodel

import (
	"context"
	"fmt"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/internal/testutil"
)

const relTol = 1e-4 // golden.md: VAE/VAR activations ~1e-4 relative to the tensor's max |value|

// cpuVariants are the CPU backend as users run it (SIMD matrix products where the machine has them) and
// its plain-Go reference; the golden tests hold for both.
var cpuVariants = []struct {
	name string
	new  func(threads int) *cpu.Backend
}{{"fast", cpu.New}, {"reference", cpu.NewReference}}

func loadTinyPipeline(t *testing.T) (*Pipeline, *testutil.Golden, core.Backend) {
	return loadTinyPipelineOn(t, cpu.New(0))
}

func loadTinyPipelineOn(t *testing.T, b core.Backend) (*Pipeline, *testutil.Golden, core.Backend) {
	t.Helper()
	p, err := LoadPipeline(testutil.Source(t, testutil.VarTiny("var.pth")), testutil.Source(t, testutil.VarTiny("vae.pth")), b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p, testutil.OpenGolden(t, testutil.VarTiny("golden.safetensors")), b
}

func TestTinyConfigInferred(t *testing.T) {
	p, _, _ := loadTinyPipeline(t)
	c := p.VAR.Config()
	want := Config{Depth: 2, C: 128, Heads: 2, FFN: 512, Cvae: 8, V: 64, Classes: 10, SharedAdaLN: false,
		L2NormAttn: true, PatchNums: []int{1, 2, 3, 4}, L: 30, NormEps: 1e-6}
	if fmt.Sprintf("%+v", c) != fmt.Sprintf("%+v", want) {
		t.Fatalf("config\n got %+v\nwant %+v", c, want)
	}
}

func TestTeacherForcedForwardMatchesGolden(t *testing.T) {
	for _, v := range cpuVariants {
		t.Run(v.name, func(t *testing.T) { testTeacherForced(t, v.new(0)) })
	}
}

func testTeacherForced(t *testing.T, be core.Backend) {
	p, g, b := loadTinyPipelineOn(t, be)
	o := core.NewOps(b)
	taps := map[string]core.HostTensor{}
	o.OnTap = func(name string, x *core.Tensor) { taps[name] = o.Download(x) }
	labels := g.Ints("tf.label_B")
	x := o.Upload(g.F32("tf.x_BLCv_wo_first_l"))
	logits := o.Download(p.VAR.TeacherForward(o, labels, x))
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	names := []string{"tf.x_in", "tf.cond_BD_or_gss", "tf.head_nm_out"}
	for i := 0; i < 2; i++ {
		for _, s := range []string{"attn_out", "ffn_out", "out"} {
			names = append(names, fmt.Sprintf("tf.block%d.%s", i, s))
		}
	}
	for _, n := range names {
		got, ok := taps[n]
		if !ok {
			t.Errorf("no tap %s", n)
			continue
		}
		testutil.RelClose(t, n, got.Data, g.F32(n).Data, relTol)
	}
	testutil.RelClose(t, "tf.logits", logits.Data, g.F32("tf.logits").Data, relTol)
}

// The three greedy generations: tokens must match exactly, images and (for ar1) every per-scale tensor
// within tolerance.
func TestGreedyGenerationMatchesGolden(t *testing.T) {
	for _, v := range cpuVariants {
		t.Run(v.name, func(t *testing.T) { testGreedyGeneration(t, v.new(0)) })
	}
}

func testGreedyGeneration(t *testing.T, be core.Backend) {
	p, g, b := loadTinyPipelineOn(t, be)
	for _, run := range []string{"ar0", "ar1", "ar2"} {
		t.Run(run, func(t *testing.T) {
			o := core.NewOps(b)
			taps := map[string]core.HostTensor{}
			o.OnTap = func(name string, x *core.Tensor) { taps[name] = o.Download(x) }
			req := Request{Labels: g.Ints(run + ".label_B"), CFG: float64(g.F32(run + ".cfg").Data[0]), TopK: 1,
				Seed: uint64(g.Ints(run + ".g_seed")[0])}
			var events int
			res, err := p.Run(context.Background(), o, req, func(ev ScaleEvent) error {
				if ev.Scale != events {
					t.Errorf("event for scale %d, want %d", ev.Scale, events)
				}
				events++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if events != 4 {
				t.Errorf("%d scale events, want 4", events)
			}
			for si := 0; si < 4; si++ {
				name := fmt.Sprintf("%s.idx.s%d", run, si)
				testutil.IntsEqual(t, name, res.Tokens[si], g.Ints(name))
				if !g.Has(fmt.Sprintf("%s.s%d.logits_raw", run, si)) {
					continue
				}
				for _, n := range []string{"logits_raw", "logits_cfg", "f_hat", "next_in", "block0.out", "block1.out"} {
					name := fmt.Sprintf("%s.s%d.%s", run, si, n)
					if !g.Has(name) {
						continue
					}
					got, ok := taps[fmt.Sprintf("ar.s%d.%s", si, n)]
					if !ok {
						t.Errorf("no tap for %s", name)
						continue
					}
					testutil.RelClose(t, name, got.Data, g.F32(name).Data, relTol)
				}
			}
			testutil.RelClose(t, run+".img", res.Images.Data, g.F32(run+".img").Data, relTol)
		})
	}
}
