package vqvae

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/internal/testutil"
)

// Activations of the VAE are compared relative to the tensor's largest magnitude (golden.md: ~1e-4).
const relTol = 1e-4

var tinyPatchNums = []int{1, 2, 3, 4}

func loadTiny(t *testing.T) (*Model, *testutil.Golden, core.Backend) {
	t.Helper()
	b := cpu.New(0)
	w := core.NewWeights(testutil.Source(t, testutil.VarTiny("vae.pth")), b)
	m, err := Load(w, tinyPatchNums)
	if err != nil {
		t.Fatal(err)
	}
	if un := w.Unused(); len(un) > 0 {
		t.Fatalf("unused VAE tensors: %v", un)
	}
	return m, testutil.OpenGolden(t, testutil.VarTiny("golden.safetensors")), b
}

func up(t *testing.T, o *core.Ops, h core.HostTensor) *core.Tensor {
	t.Helper()
	x := o.Upload(h)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	return x
}

func down(t *testing.T, o *core.Ops, x *core.Tensor) core.HostTensor {
	t.Helper()
	h := o.Download(x)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestConfigFromCheckpoint(t *testing.T) {
	m, _, _ := loadTiny(t)
	c := m.Config()
	if c.V != 64 || c.Cvae != 8 || c.Phi != PhiPartiallyShared || c.PhiCount != 4 || c.Levels != 5 || !c.HasEncoder {
		t.Fatalf("config %+v", c)
	}
	if m.ImageSize() != 64 {
		t.Fatalf("image size %d, want 64", m.ImageSize())
	}
}

func TestPhiTicksMatchNumpy(t *testing.T) {
	var cfg struct {
		VAE struct {
			Ticks    []float64 `json:"quant_resi_ticks"`
			PerScale []int     `json:"phi_index_per_scale"`
		} `json:"vae"`
	}
	raw, err := os.ReadFile(testutil.VarTiny("config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	got := phiTicks(4)
	for i, v := range cfg.VAE.Ticks {
		if got[i] != v { // bit-exact: ties are decided by these roundings
			t.Errorf("tick %d = %.17g, numpy %.17g", i, got[i], v)
		}
	}
	for si, want := range cfg.VAE.PerScale {
		if g := PhiIndex(si, 4, 4); g != want {
			t.Errorf("PhiIndex(%d, 4, 4) = %d, want %d", si, g, want)
		}
	}
}

func TestPhiIndexOfficialSchedules(t *testing.T) {
	// The real 10-scale schedule with 4 Phis; si = 2 and 7 are exact ties resolved to the later Phi.
	want := []int{0, 0, 1, 1, 1, 2, 2, 3, 3, 3}
	for si, w := range want {
		if g := PhiIndex(si, 10, 4); g != w {
			t.Errorf("PhiIndex(%d, 10, 4) = %d, want %d", si, g, w)
		}
	}
	// Non-shared Phi, one per scale: the ticks (2i+1)/(2K) put scale si on Phi si.
	for _, k := range []int{3, 5, 6, 10} {
		for si := 0; si < k; si++ {
			if g := PhiIndex(si, k, k); g != si {
				t.Errorf("PhiIndex(%d, %d, %d) = %d, want %d", si, k, k, g, si)
			}
		}
	}
	// One shared Phi.
	if g := PhiIndex(5, 10, 1); g != 0 {
		t.Errorf("shared Phi index %d", g)
	}
}

// The composite golden ops exercise single layers with the checkpoint's weights.
func TestGoldenLayers(t *testing.T) {
	m, g, b := loadTiny(t)
	o := core.NewOps(b)
	cases := []struct {
		name string
		run  func(x *core.Tensor) *core.Tensor
	}{
		{"op.vae_downsample2x", func(x *core.Tensor) *core.Tensor { return m.enc.Levels[0].Resample.Apply(o, x) }},
		{"op.vae_upsample2x", func(x *core.Tensor) *core.Tensor {
			return m.dec.Levels[1].Resample.Apply(o, o.Upsample2x(x))
		}},
		{"op.vae_resblock", func(x *core.Tensor) *core.Tensor { return m.enc.Levels[2].Blocks[0].Apply(o, x) }},
		{"op.vae_attnblock", func(x *core.Tensor) *core.Tensor { return m.enc.Mid.Attn.Apply(o, x) }},
	}
	for _, c := range cases {
		x := up(t, o, g.F32(c.name+".in"))
		got := down(t, o, c.run(x))
		want := g.F32(c.name + ".out")
		if !got.Shape.Equal(want.Shape) {
			t.Fatalf("%s: shape %v, want %v", c.name, got.Shape, want.Shape)
		}
		testutil.RelClose(t, c.name, got.Data, want.Data, relTol)
	}
	x := up(t, o, g.F32("op.phi.in"))
	for si := 0; si < 4; si++ {
		name := fmt.Sprintf("op.phi.s%d.out", si)
		testutil.RelClose(t, name, down(t, o, m.q.applyPhi(o, si, x)).Data, g.F32(name).Data, relTol)
	}
}

func TestEncodeMatchesGolden(t *testing.T) {
	m, g, b := loadTiny(t)
	o := core.NewOps(b)
	taps := map[string]core.HostTensor{}
	o.OnTap = func(name string, x *core.Tensor) { taps[name] = down(t, o, x) }
	f := m.Encode(o, up(t, o, g.F32("vae.x")))
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vae.enc.conv_in", "vae.enc.down0", "vae.enc.down1", "vae.enc.down2", "vae.enc.down3", "vae.enc.mid"} {
		want := g.F32(name) // batch element 0 only
		got, ok := taps[name]
		if !ok {
			t.Errorf("no tap %s", name)
			continue
		}
		testutil.RelClose(t, name, got.Data[:len(want.Data)], want.Data, relTol)
	}
	testutil.RelClose(t, "vae.enc.out", taps["vae.enc.out"].Data, g.F32("vae.enc.out").Data, relTol)
	testutil.RelClose(t, "vae.f", down(t, o, f).Data, g.F32("vae.f").Data, relTol)

	// End to end image -> tokens (the golden's smallest relative distance gap is 1e-3).
	ids, _ := m.Tokenize(o, f, false)
	for si := range tinyPatchNums {
		name := fmt.Sprintf("vae.idx.s%d", si)
		testutil.IntsEqual(t, name+" (from vae.x)", ids[si], g.Ints(name))
	}
}

func TestTokenizeFromGoldenF(t *testing.T) {
	m, g, b := loadTiny(t)
	o := core.NewOps(b)
	ids, fhats := m.Tokenize(o, up(t, o, g.F32("vae.f")), true)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	for si := range tinyPatchNums {
		name := fmt.Sprintf("vae.idx.s%d", si)
		testutil.IntsEqual(t, name, ids[si], g.Ints(name))
		fname := fmt.Sprintf("vae.f_hat.s%d", si)
		testutil.RelClose(t, fname, down(t, o, fhats[si]).Data, g.F32(fname).Data, relTol)
	}
	var flat []int
	for _, s := range ids {
		flat = append(flat, s...)
	}
	// vae.idx_BL is image-major: reorder our scale-major ids to compare.
	var bl []int
	for b := 0; b < 2; b++ {
		for si, pn := range tinyPatchNums {
			bl = append(bl, ids[si][b*pn*pn:(b+1)*pn*pn]...)
		}
	}
	testutil.IntsEqual(t, "vae.idx_BL", bl, g.Ints("vae.idx_BL"))
}

func goldenIDs(g *testutil.Golden, prefix string) [][]int {
	var ids [][]int
	for si := range tinyPatchNums {
		ids = append(ids, g.Ints(fmt.Sprintf("%s.s%d", prefix, si)))
	}
	return ids
}

func TestDecodeMatchesGolden(t *testing.T) {
	m, g, b := loadTiny(t)
	o := core.NewOps(b)
	taps := map[string]core.HostTensor{}
	o.OnTap = func(name string, x *core.Tensor) { taps[name] = down(t, o, x) }
	img := down(t, o, m.Decode(o, up(t, o, g.F32("vae.f_hat.s3"))))
	for _, name := range []string{"vae.dec.post_quant_conv", "vae.dec.conv_in", "vae.dec.mid", "vae.dec.up4", "vae.dec.up3", "vae.dec.up2", "vae.dec.up1"} {
		want := g.F32(name)
		got, ok := taps[name]
		if !ok {
			t.Errorf("no tap %s", name)
			continue
		}
		testutil.RelClose(t, name, got.Data[:len(want.Data)], want.Data, relTol)
	}
	testutil.RelClose(t, "vae.dec.pre_clamp", taps["vae.dec.pre_clamp"].Data, g.F32("vae.dec.pre_clamp").Data, relTol)
	testutil.RelClose(t, "vae.recon", img.Data, g.F32("vae.recon").Data, relTol)
}

func TestPreviewsMatchGolden(t *testing.T) {
	m, g, b := loadTiny(t)
	o := core.NewOps(b)
	fhats := m.FHatFromTokens(o, goldenIDs(g, "vae.idx"), 2)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	for si := range tinyPatchNums {
		name := fmt.Sprintf("vae.embed_to_fhat.s%d", si)
		testutil.RelClose(t, name, down(t, o, fhats[si]).Data, g.F32(name).Data, relTol)
		pname := fmt.Sprintf("vae.preview.s%d", si)
		testutil.RelClose(t, pname, down(t, o, m.Decode(o, fhats[si])).Data, g.F32(pname).Data, relTol)
	}
}

func TestVarInputMatchesGolden(t *testing.T) {
	m, g, b := loadTiny(t)
	o := core.NewOps(b)
	x := down(t, o, m.VarInput(o, goldenIDs(g, "vae.idx"), 2))
	want := g.F32("tf.x_BLCv_wo_first_l")
	if !x.Shape.Equal(want.Shape) {
		t.Fatalf("shape %v, want %v", x.Shape, want.Shape)
	}
	testutil.RelClose(t, "tf.x_BLCv_wo_first_l", x.Data, want.Data, relTol)
}
