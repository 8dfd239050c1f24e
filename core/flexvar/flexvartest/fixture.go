// Package flexvartest checks a FlexVAR fixture directory (golden tensors from the official code, see
// testdata/flexvar-tiny/golden.md) on any backend: the flexvar package's tests run it on the CPU, core/webgpu's
// on the GPU, each on testdata/flexvar-tiny and on every WEBVAR_FIXTURES directory of the family.
package flexvartest

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/internal/testutil"
)

// Tolerances of golden.md: primitives ~1e-5 absolute, activations, logits and images ~1e-4 relative to
// the tensor's max |value|.
const (
	opTol  = 1e-5
	relTol = 1e-4
)

// Load opens the fixture's checkpoints on b, with config.json's head count (which only a model without
// l2-norm attention needs: its checkpoint does not say it).
func Load(t *testing.T, f testutil.Fixture, b core.Backend) *flexvar.Pipeline {
	t.Helper()
	heads := testutil.ReadVARConfig(t, f).NumHeads
	p, err := flexvar.LoadPipeline(testutil.Source(t, f.Path("var.pth")), testutil.Source(t, f.Path("vae.pth")), b, heads)
	if err != nil {
		t.Fatalf("fixture %s: %v", f.Name, err)
	}
	return p
}

// Check runs every golden comparison of the fixture on b. Token ids must match exactly.
func Check(t *testing.T, f testutil.Fixture, b core.Backend) {
	p := Load(t, f, b)
	g := testutil.OpenGolden(t, f.Path("golden.safetensors"))
	t.Run("ops", func(t *testing.T) { checkOps(t, p, g, b) })
	t.Run("tokenizer", func(t *testing.T) { checkTokenizer(t, p, g, b) })
	t.Run("teacher-forced", func(t *testing.T) { checkTeacherForced(t, p, g, b) })
	g.Generations(t, f.Name, func(t *testing.T, run string) { checkGeneration(t, p, g, b, run) })
}

func schedule(g *testutil.Golden, name string) []flexvar.Grid { return flexvar.Square(g.Ints(name)) }

func checkOps(t *testing.T, p *flexvar.Pipeline, g *testutil.Golden, b core.Backend) {
	o := core.NewOps(b)
	got := func(x *core.Tensor) []float32 { return o.Download(x).Data }
	for _, n := range []string{"1to2", "2to3", "3to4", "3to5"} {
		name := "op.bicubic." + n
		if !g.Has(name + ".in") {
			continue
		}
		want := g.F32(name + ".out")
		testutil.AbsClose(t, name, got(o.ResizeBicubic(o.Upload(g.F32(name+".in")), want.Shape[2], want.Shape[3])), want.Data, opTol)
	}
	for _, in := range []string{"op.area32", "op.area_h"} {
		if !g.Has(in + ".in") {
			continue
		}
		x := o.Upload(g.F32(in + ".in"))
		for k := 1; g.Has(fmt.Sprintf("%s.to%d.out", in, k)); k++ {
			name := fmt.Sprintf("%s.to%d.out", in, k)
			want := g.F32(name)
			testutil.AbsClose(t, name, got(o.ResizeArea(x, want.Shape[2], want.Shape[3])), want.Data, opTol)
		}
	}
	if g.Has("op.gelu_tanh.in") {
		testutil.AbsClose(t, "op.gelu_tanh", got(o.GELUTanh(o.Upload(g.F32("op.gelu_tanh.in")))), g.F32("op.gelu_tanh.out").Data, opTol)
	}
	if g.Has("op.codebook_normalized") {
		testutil.AbsClose(t, "op.codebook_normalized", got(p.VAE.Codebook()), g.F32("op.codebook_normalized").Data, opTol)
	}
	for _, n := range goldenNames(g, "op.sincos_") {
		want := g.F32(n)
		d, h, w := want.Shape[1], want.Shape[2], want.Shape[3]
		testutil.AbsClose(t, n, flexvar.SinCosGrid(h, w, d), want.Data, opTol)
	}
	for pn := 1; g.Has(fmt.Sprintf("pos.pn%d", pn)); pn++ {
		name := fmt.Sprintf("pos.pn%d", pn)
		testutil.RelClose(t, name, got(p.VAR.Positions(o, flexvar.Grid{H: pn, W: pn})), g.F32(name).Data, relTol)
	}
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
}

// goldenNames lists op.sincos_HxWxD names by the shapes golden.md uses; the fixture may have any.
func goldenNames(g *testutil.Golden, prefix string) []string {
	var out []string
	for _, n := range []string{"op.sincos_5x7x16", "op.sincos_4x4x8", "op.sincos_32x32x16"} {
		if strings.HasPrefix(n, prefix) && g.Has(n) {
			out = append(out, n)
		}
	}
	return out
}

func checkTokenizer(t *testing.T, p *flexvar.Pipeline, g *testutil.Golden, b core.Backend) {
	if !g.Has("vae.x") {
		t.Skip("fixture has no tokenizer goldens")
	}
	o := core.NewOps(b)
	taps := map[string]core.HostTensor{}
	o.OnTap = func(name string, x *core.Tensor) { taps[name] = o.Download(x) }
	h := p.VAE.Encode(o, o.Upload(g.F32("vae.x")))
	testutil.RelClose(t, "vae.h", o.Download(h).Data, g.F32("vae.h").Data, relTol)
	bsz := h.Dim(0)
	var ids [][]int
	var sched []flexvar.Grid
	for k := 0; g.Has(fmt.Sprintf("vae.idx.s%d", k)); k++ {
		want := g.Ints(fmt.Sprintf("vae.idx.s%d", k))
		pn := int(math.Round(math.Sqrt(float64(len(want) / bsz))))
		gr := flexvar.Grid{H: pn, W: pn}
		got := p.VAE.Quantize(o, h, gr)
		if err := o.Err(); err != nil {
			t.Fatal(err)
		}
		testutil.IntsEqual(t, fmt.Sprintf("vae.idx.s%d", k), got, want)
		ids = append(ids, want)
		sched = append(sched, gr)
	}
	if g.Has("tf.x_BLCv_wo_first_l") && len(sched) > 1 {
		x := p.VAE.TeacherInput(o, ids, bsz, sched)
		testutil.RelClose(t, "tf.x_BLCv_wo_first_l", o.Download(x).Data, g.F32("tf.x_BLCv_wo_first_l").Data, relTol)
	}
	last := sched[len(sched)-1]
	img := p.VAE.Decode(o, ids[len(ids)-1], bsz, last)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	testutil.RelClose(t, "vae.recon", o.Download(img).Data, g.F32("vae.recon").Data, relTol)
	// Intermediate goldens hold batch element 0 only.
	for _, n := range []string{"vae.dec.post_quant_conv", "vae.dec.conv_in"} {
		if !g.Has(n) {
			continue
		}
		want := g.F32(n)
		testutil.RelClose(t, n, taps[n].Data[:len(want.Data)], want.Data, relTol)
	}
}

func checkTeacherForced(t *testing.T, p *flexvar.Pipeline, g *testutil.Golden, b core.Backend) {
	if !g.Has("tf.logits") {
		t.Skip("fixture has no teacher-forcing goldens")
	}
	o := core.NewOps(b)
	taps := map[string]core.HostTensor{}
	o.OnTap = func(name string, x *core.Tensor) { taps[name] = o.Download(x) }
	sched := schedule(g, "tf.schedule")
	logits := p.VAR.TeacherForward(o, g.Ints("tf.label_B"), o.Upload(g.F32("tf.x_BLCv_wo_first_l")), sched)
	got := o.Download(logits)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	if g.Has("tf.attn_allowed") {
		mask := flexvar.StepMask(sched)
		allowed := g.Ints("tf.attn_allowed")
		for i, a := range allowed {
			if (a == 1) != (mask.Data[i] == 0) {
				t.Fatalf("tf.attn_allowed: position %d allowed=%d, mask %v", i, a, mask.Data[i])
			}
		}
	}
	names := []string{"tf.x_in", "tf.cond_BD_or_gss"}
	for i := 0; i < p.VAR.Config().Depth; i++ {
		names = append(names, fmt.Sprintf("tf.block%d.out", i))
	}
	g.CompareTaps(t, taps, names, relTol)
	testutil.RelClose(t, "tf.logits", got.Data, g.F32("tf.logits").Data, relTol)
}

func checkGeneration(t *testing.T, p *flexvar.Pipeline, g *testutil.Golden, b core.Backend, run string) {
	o := core.NewOps(b)
	taps := map[string]core.HostTensor{}
	o.OnTap = func(name string, x *core.Tensor) { taps[name] = o.Download(x) }
	req := flexvar.Request{Labels: g.Ints(run + ".label_B"), Schedule: schedule(g, run+".schedule"),
		CFG: float64(g.F32(run + ".cfg").Data[0]), MaxPN: g.Ints(run + ".max_pn")[0], TopK: 1}
	if g.Ints(run + ".used_llamagen_cfg")[0] != 0 {
		req.CFGMode = flexvar.CFGLlamaGen
	}
	steps := 0
	res, err := p.Run(context.Background(), o, req, func(ev flexvar.StepEvent) error {
		if ev.Step != steps || ev.Steps != len(req.Schedule) {
			t.Errorf("event for step %d/%d, want %d/%d", ev.Step, ev.Steps, steps, len(req.Schedule))
		}
		steps++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if steps != len(req.Schedule) {
		t.Errorf("%d step events, want %d", steps, len(req.Schedule))
	}
	for si := range req.Schedule {
		name := fmt.Sprintf("%s.idx.s%d", run, si)
		testutil.IntsEqual(t, name, res.Tokens[si], g.Ints(name))
		for _, n := range []string{"tok_map", "logits_raw", "logits_cfg", "next_in"} {
			gname := fmt.Sprintf("%s.s%d.%s", run, si, n)
			if !g.Has(gname) {
				continue
			}
			tap, ok := taps[fmt.Sprintf("ar.s%d.%s", si, n)]
			if !ok {
				t.Errorf("no tap for %s", gname)
				continue
			}
			testutil.RelClose(t, gname, tap.Data, g.F32(gname).Data, relTol)
		}
	}
	testutil.RelClose(t, run+".img", taps["ar.img"].Data, g.F32(run+".img").Data, relTol)
}
