// Package rqtest checks an RQ fixture directory (golden tensors from the official code, see
// testdata/rq-tiny/golden.md) on any backend: the rq package's tests run it on the CPU, core/webgpu's on
// the GPU, each on testdata/rq-tiny and on every WEBVAR_FIXTURES directory of the family.
package rqtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/loader"
)

// relTol is golden.md's tolerance for an fp32 port: activations within 1e-4 of the tensor's max |value|.
// Code ids must match exactly.
const relTol = 1e-4

// Open is an rq.Opener over the loader package. The loader reads the first nested state dict it knows
// ('state_dict' before 'state_dict_ema'), so only "state_dict" can be asked for.
func Open(path, key string) (core.WeightSource, func() error, error) {
	if key != "state_dict" {
		return nil, nil, fmt.Errorf("%s: the loader reads 'state_dict'; %q cannot be chosen yet", path, key)
	}
	c, err := loader.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return c.WeightSource(), c.Close, nil
}

// Load opens the fixture's release layout (stage1/, stage2/) on b.
func Load(t *testing.T, f testutil.Fixture, b core.Backend) *rq.Pipeline {
	t.Helper()
	p, err := rq.LoadRelease(f.Dir, b, rq.ReleaseOptions{Open: Open})
	if err != nil {
		t.Fatalf("fixture %s: %v", f.Name, err)
	}
	return p
}

// Check runs every golden comparison of the fixture on b.
func Check(t *testing.T, f testutil.Fixture, b core.Backend) {
	p := Load(t, f, b)
	g := testutil.OpenGolden(t, f.Path("golden.safetensors"))
	t.Run("vae", func(t *testing.T) { CheckVAE(t, p, g, b) })
	t.Run("teacher-forced", func(t *testing.T) { CheckTeacherForced(t, p, g, b) })
	t.Run("sample", func(t *testing.T) { CheckSample(t, p, g, b) })
	t.Run("prefix", func(t *testing.T) { CheckPrefix(t, p, g, b) })
}

func download(t *testing.T, o *core.Ops, x *core.Tensor) []float32 {
	t.Helper()
	h := o.Download(x)
	o.Free(x)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	return h.Data
}

// codesOf reads a (B, H, W, D) code tensor of the golden file; the map's sides are the model's.
func codesOf(p *rq.Pipeline, g *testutil.Golden, name string) rq.Codes {
	c := p.M.Config()
	ids := g.Ints(name)
	return rq.Codes{B: len(ids) / (c.H * c.W * c.D), H: c.H, W: c.W, D: c.D, IDs: ids}
}

// CheckVAE: encoder, latent, residual codes (exact) and their partial sums, code embeddings, and the
// decodes of every depth prefix, of one depth alone and of all codes.
func CheckVAE(t *testing.T, p *rq.Pipeline, g *testutil.Golden, b core.Backend) {
	o := core.NewOps(b)
	x := o.Upload(g.F32("vae.x"))
	testutil.RelClose(t, "vae.encoder_out", download(t, o, p.V.Encoder(o, x)), g.F32("vae.encoder_out").Data, relTol)
	z := p.V.Encode(o, x)
	o.Free(x)
	zh := o.Download(z)
	testutil.RelClose(t, "vae.z_e", zh.Data, g.F32("vae.z_e").Data, relTol)
	q := p.V.Quantize(o, z)
	o.Free(z)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	testutil.IntsEqual(t, "vae.codes", q.Codes.IDs, g.Ints("vae.codes"))
	want := codesOf(p, g, "vae.codes")
	if q.Codes.B != want.B || q.Codes.H != want.H || q.Codes.W != want.W || q.Codes.D != want.D {
		t.Errorf("codes shape (%d, %d, %d, %d), want (%d, %d, %d, %d)", q.Codes.B, q.Codes.H, q.Codes.W, q.Codes.D, want.B, want.H, want.W, want.D)
	}
	// The commitment loss: the mean over depths of mean((z_e - quant_cumsum.d)^2).
	loss := 0.0
	for d, cs := range q.Cumsum {
		h := o.Download(cs)
		testutil.RelClose(t, fmt.Sprintf("vae.quant_cumsum.d%d", d), h.Data, g.F32(fmt.Sprintf("vae.quant_cumsum.d%d", d)).Data, relTol)
		s := 0.0
		for i, v := range h.Data {
			e := float64(zh.Data[i] - v)
			s += e * e
		}
		loss += s / float64(len(h.Data))
	}
	if g.Has("vae.commitment_loss") {
		testutil.RelClose(t, "vae.commitment_loss", []float32{float32(loss / float64(len(q.Cumsum)))}, g.F32("vae.commitment_loss").Data, relTol)
	}
	if g.Has("vae.forward_out") && len(q.Cumsum) > 0 {
		testutil.RelClose(t, "vae.forward_out", download(t, o, p.V.Decode(o, q.Cumsum[len(q.Cumsum)-1])), g.F32("vae.forward_out").Data, relTol)
	}
	q.Free(o)

	// The decodes use the golden codes, so that they are checked even where the encoder's differ.
	testutil.RelClose(t, "vae.code_emb_with_depth", download(t, o, p.V.CodeEmbeddings(o, want)), g.F32("vae.code_emb_with_depth").Data, relTol)
	for d := range want.D {
		name := fmt.Sprintf("vae.partial_add.d%d", d)
		if g.Has(name) {
			testutil.RelClose(t, name, download(t, o, p.V.DecodePartial(o, want, d, rq.SumFirst)), g.F32(name).Data, relTol)
		}
		name = fmt.Sprintf("vae.partial_select.d%d", d)
		if g.Has(name) {
			testutil.RelClose(t, name, download(t, o, p.V.DecodePartial(o, want, d, rq.SumOnly)), g.F32(name).Data, relTol)
		}
	}
	testutil.RelClose(t, "vae.decode_code", download(t, o, p.V.DecodeCodes(o, want)), g.F32("vae.decode_code").Data, relTol)
}

// CheckTeacherForced: the body's and the head's inputs and outputs and the logits of forward() on the
// golden codes.
func CheckTeacherForced(t *testing.T, p *rq.Pipeline, g *testutil.Golden, b core.Backend) {
	o := core.NewOps(b)
	taps := map[string][]float32{}
	o.OnTap = func(name string, x *core.Tensor) {
		if h, err := b.Download(x); err == nil {
			taps[name] = h.Data
		}
	}
	logits := download(t, o, p.M.Forward(o, p.V, codesOf(p, g, "tf.codes"), g.Ints("tf.cond")))
	for _, n := range []string{"body_in", "body_out", "head_in", "head_out"} {
		got, ok := taps["rq.tf."+n]
		if !ok {
			t.Errorf("rq.tf.%s not tapped", n)
			continue
		}
		testutil.RelClose(t, "tf."+n, got, g.F32("tf."+n).Data, relTol)
	}
	testutil.RelClose(t, "tf.logits", logits, g.F32("tf.logits").Data, relTol)
}

// stepLogits reorders per-position logits [pos][d][B*V] into the golden's (B, H*W*D, V).
func stepLogits(steps [][][]float32, B, V int) []float32 {
	var n int
	for _, s := range steps {
		n += len(s)
	}
	out := make([]float32, 0, B*n*V)
	for b := range B {
		for _, s := range steps {
			for _, lg := range s {
				out = append(out, lg[b*V:(b+1)*V]...)
			}
		}
	}
	return out
}

// CheckSample: the greedy cached sampler (tr.sample with top_k=1) gives the official codes exactly, the
// logits of every step, and their images; the teacher-forced logits on the sampled codes agree.
func CheckSample(t *testing.T, p *rq.Pipeline, g *testutil.Golden, b core.Backend) {
	o := core.NewOps(b)
	labels := g.Ints("ar.cond")
	var steps [][][]float32
	req := rq.Request{Labels: labels, Sampling: rq.Greedy, RNG: core.NewRNG(1), Logits: true,
		OnPosition: func(pos rq.Position) error {
			if pos.Index != len(steps) {
				return fmt.Errorf("position %d after %d", pos.Index, len(steps))
			}
			steps = append(steps, pos.Logits)
			return nil
		}}
	codes, err := p.Sample(context.Background(), o, req)
	if err != nil {
		t.Fatal(err)
	}
	testutil.IntsEqual(t, "ar.codes", codes.IDs, g.Ints("ar.codes"))
	V := p.M.Config().V
	testutil.RelClose(t, "ar.step_logits", stepLogits(steps, len(labels), V), g.F32("ar.step_logits").Data, relTol)
	img := p.DecodeHost(o, codes)
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	testutil.RelClose(t, "ar.img", img.Data, g.F32("ar.img").Data, relTol)
	testutil.RelClose(t, "ar.img01", rq.ToUnit(img).Data, g.F32("ar.img01").Data, relTol)
	testutil.RelClose(t, "ar.tf_logits", download(t, o, p.M.Forward(o, p.V, codesOf(p, g, "ar.codes"), labels)), g.F32("ar.tf_logits").Data, relTol)
}

// CheckPrefix: keeping the official codes of the first positions (the sampler's start_loc, a prefill of
// the body's cache) and sampling greedily from there gives the same codes and step logits.
func CheckPrefix(t *testing.T, p *rq.Pipeline, g *testutil.Golden, b core.Backend) {
	want := codesOf(p, g, "ar.codes")
	labels := g.Ints("ar.cond")
	V, D := p.M.Config().V, p.M.Config().D
	all := g.F32("ar.step_logits").Data
	L := want.H * want.W
	for _, keep := range []int{1, L / 2, L} {
		t.Run(fmt.Sprint(keep), func(t *testing.T) {
			o := core.NewOps(b)
			var steps [][][]float32
			kept := 0
			req := rq.Request{Labels: labels, Sampling: rq.Greedy, Logits: true, Prefix: rq.PrefixOf(want, keep),
				OnPosition: func(pos rq.Position) error {
					if pos.Kept {
						kept++
					} else {
						steps = append(steps, pos.Logits)
					}
					return nil
				}}
			codes, err := p.Sample(context.Background(), o, req)
			if err != nil {
				t.Fatal(err)
			}
			if kept != keep {
				t.Errorf("%d kept positions reported, want %d", kept, keep)
			}
			testutil.IntsEqual(t, "ar.codes", codes.IDs, want.IDs)
			var ref []float32
			for bi := range len(labels) {
				ref = append(ref, all[(bi*L+keep)*D*V:(bi+1)*L*D*V]...)
			}
			if keep < L {
				testutil.RelClose(t, fmt.Sprintf("ar.step_logits[%d:]", keep), stepLogits(steps, len(labels), V), ref, relTol)
			} else if len(steps) != 0 {
				t.Errorf("%d positions sampled with every position kept", len(steps))
			}
		})
	}
}
