package rq_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/core/rq/rqtest"
	"github.com/webvar/webvar/internal/testutil"
)

func rqTiny(name string) string { return filepath.Join(testutil.Root(), "testdata", "rq-tiny", name) }

// mapOf reads every tensor of a checkpoint into memory, for tests that break one.
func mapOf(t *testing.T, path string) core.MapSource {
	t.Helper()
	src := testutil.Source(t, path)
	m := core.MapSource{}
	for _, n := range src.Names() {
		h, err := src.Load(n)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = core.HostTensor{Shape: h.Shape.Clone(), Data: append([]float32(nil), h.Data...)}
	}
	return m
}

func clone(m core.MapSource) core.MapSource {
	out := core.MapSource{}
	for k, v := range m {
		out[k] = core.HostTensor{Shape: v.Shape.Clone(), Data: append([]float32(nil), v.Data...)}
	}
	return out
}

var tinyHeads = rq.Options{BodyHeads: 2, HeadHeads: 2}

// The plain state_dicts (stage1.pth, stage2.pth) load from their tensors alone, given the head counts, to
// the architecture config.yaml describes; the pipeline greedy-samples the official codes.
func TestRQLoadFromTensors(t *testing.T) {
	s2, s1 := testutil.Source(t, rqTiny("stage2.pth")), testutil.Source(t, rqTiny("stage1.pth"))
	if !rq.Detect(s2) || rq.Detect(s1) || !rq.DetectVAE(s1) || rq.DetectVAE(s2) {
		t.Fatal("Detect / DetectVAE do not tell the stages apart")
	}
	if rq.Detect(testutil.Source(t, testutil.MARTiny("mar.pth"))) {
		t.Error("a MAR checkpoint detected as RQ")
	}
	p, err := rq.LoadPipeline(s2, s1, cpu.New(1), tinyHeads)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(rqTiny(rq.Stage2Config))
	if err != nil {
		t.Fatal(err)
	}
	y, _, err := rq.ParseConfig(rq.Stage2Config, data)
	if err != nil {
		t.Fatal(err)
	}
	got := p.M.Config()
	y.Body.FFN, y.Head.FFN = got.Body.FFN, got.Head.FFN
	if got != y {
		t.Errorf("inferred %+v, config.yaml says %+v", got, y)
	}
	vc := p.V.Config()
	if want := (rq.VAEConfig{Embed: 16, NEmbed: 128, Depth: 4, Z: 32, Levels: 4, In: 3}); vc != want {
		t.Errorf("VAE config %+v, want %+v", vc, want)
	}
	if h, w := p.ImageSize(); h != 32 || w != 32 {
		t.Errorf("image size %dx%d", h, w)
	}
	g := testutil.OpenGolden(t, rqTiny("golden.safetensors"))
	o := core.NewOps(cpu.New(1))
	codes, err := p.Sample(context.Background(), o, rq.Request{Labels: g.Ints("ar.cond"), Sampling: rq.Greedy})
	if err != nil {
		t.Fatal(err)
	}
	testutil.IntsEqual(t, "ar.codes", codes.IDs, g.Ints("ar.codes"))

	quantizable := rq.Tensors(got).Quantizer()
	for _, name := range []string{"input_mlp.weight", "classifier.linear.weight", "body_transformer.blocks.1.attn.query.weight",
		"head_transformer.blocks.0.mlp.2.weight", "body_transformer.blocks.0.attn.proj.weight"} {
		if !quantizable(name) {
			t.Errorf("%s is a Linear weight", name)
		}
	}
	for _, name := range []string{"cond_emb.weight", "pos_emb_hw", "classifier.linear.bias", "classifier.layer_norm.weight",
		"body_transformer.blocks.0.ln1.weight", "input_mlp.bias"} {
		if quantizable(name) {
			t.Errorf("%s is not a Linear weight", name)
		}
	}
}

// Bad checkpoints give errors naming the tensor: missing, misshapen, non-finite, unknown; codebooks that
// are not shared; stages that do not fit each other.
func TestRQBadCheckpoints(t *testing.T) {
	good2, good1 := mapOf(t, rqTiny("stage2.pth")), mapOf(t, rqTiny("stage1.pth"))
	cases := []struct {
		name, want string
		opt        rq.Options
		edit2      func(m core.MapSource)
		edit1      func(m core.MapSource)
	}{
		{name: "missing", want: "head_transformer.blocks.0.mlp.2.weight", edit2: func(m core.MapSource) { delete(m, "head_transformer.blocks.0.mlp.2.weight") }},
		{name: "shape", want: "body_transformer.blocks.1.attn.key.weight", edit2: func(m core.MapSource) {
			m["body_transformer.blocks.1.attn.key.weight"] = core.HostTensor{Shape: core.Shape{64, 63}, Data: make([]float32, 64*63)}
		}},
		{name: "nan", want: "classifier.linear.weight", edit2: func(m core.MapSource) { m["classifier.linear.weight"].Data[7] = float32(math.NaN()) }},
		{name: "inf", want: "pos_emb_d", edit2: func(m core.MapSource) { m["pos_emb_d"].Data[0] = float32(math.Inf(1)) }},
		{name: "unknown", want: "extra.weight", edit2: func(m core.MapSource) { m["extra.weight"] = core.HostTensor{Shape: core.Shape{1}, Data: []float32{0}} }},
		{name: "token-embedding", want: "tok_emb.weight", edit2: func(m core.MapSource) {
			m["tok_emb.weight"] = core.HostTensor{Shape: core.Shape{128, 64}, Data: make([]float32, 128*64)}
		}},
		{name: "heads", want: "heads", opt: rq.Options{BodyHeads: 3, HeadHeads: 2}},
		{name: "vae-missing", want: "encoder.down.1.block.0.norm2.bias", edit1: func(m core.MapSource) { delete(m, "encoder.down.1.block.0.norm2.bias") }},
		{name: "vae-nan", want: "quantizer.codebooks.0.weight", edit1: func(m core.MapSource) { m["quantizer.codebooks.0.weight"].Data[3] = float32(math.NaN()) }},
		{name: "vae-unknown", want: "loss.discriminator.weight", edit1: func(m core.MapSource) {
			m["loss.discriminator.weight"] = core.HostTensor{Shape: core.Shape{1}, Data: []float32{0}}
		}},
		{name: "vae-separate-codebooks", want: "quantizer.codebooks.2.weight", edit1: func(m core.MapSource) { m["quantizer.codebooks.2.weight"].Data[0] += 1 }},
		{name: "vae-shape", want: "quant_conv.weight", edit1: func(m core.MapSource) {
			m["quant_conv.weight"] = core.HostTensor{Shape: core.Shape{8, 32, 1, 1}, Data: make([]float32, 8*32)}
			m["quant_conv.bias"] = core.HostTensor{Shape: core.Shape{8}, Data: make([]float32, 8)}
		}},
		{name: "vocab", want: "predicts 64 codes", edit2: func(m core.MapSource) {
			m["classifier.linear.weight"] = core.HostTensor{Shape: core.Shape{64, 64}, Data: make([]float32, 64*64)}
			m["classifier.linear.bias"] = core.HostTensor{Shape: core.Shape{64}, Data: make([]float32, 64)}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m2, m1 := clone(good2), clone(good1)
			if c.edit2 != nil {
				c.edit2(m2)
			}
			if c.edit1 != nil {
				c.edit1(m1)
			}
			opt := tinyHeads
			if c.opt != (rq.Options{}) {
				opt = c.opt
			}
			_, err := rq.LoadPipeline(m2, m1, cpu.New(1), opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s", err, c.want)
			}
			t.Log(err)
		})
	}
	// A converted RQ-VAE keeps one copy of the shared codebook: the depth comes from the transformer.
	m1 := clone(good1)
	for _, n := range []string{"quantizer.codebooks.1.weight", "quantizer.codebooks.2.weight", "quantizer.codebooks.3.weight"} {
		delete(m1, n)
	}
	p, err := rq.LoadPipeline(good2, m1, cpu.New(1), tinyHeads)
	if err != nil {
		t.Fatal(err)
	}
	if d := p.V.Config().Depth; d != 4 {
		t.Errorf("depth %d, want 4", d)
	}
}

// copyRelease makes a release directory whose model.pt files link to testdata's and whose config.yaml
// files are edited.
func copyRelease(t *testing.T, edit1, edit2 func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	for _, stage := range []struct {
		name string
		edit func(string) string
	}{{"stage1", edit1}, {"stage2", edit2}} {
		if err := os.MkdirAll(filepath.Join(dir, stage.name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(rqTiny(stage.name+"/model.pt"), filepath.Join(dir, stage.name, "model.pt")); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(rqTiny(stage.name + "/config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		if stage.edit != nil {
			s = stage.edit(s)
		}
		if err := os.WriteFile(filepath.Join(dir, stage.name, "config.yaml"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func replace(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("config.yaml has no " + old)
		}
		return strings.Replace(s, old, new, 1)
	}
}

// config.yaml files that disagree with the tensors or with each other, ask for a variant this port does
// not implement, or are not YAML: errors naming the file, the key and (for a disagreement) the tensor.
func TestRQBadReleaseConfigs(t *testing.T) {
	cases := []struct {
		name         string
		edit1, edit2 func(string) string
		want         []string
	}{
		{name: "embed-dim", edit2: replace("embed_dim: 64", "embed_dim: 48"), want: []string{"stage2/config.yaml", "arch.embed_dim", "pos_emb_hw"}},
		{name: "n-layer", edit2: replace("n_layer: 2", "n_layer: 3"), want: []string{"arch.body.n_layer", "body_transformer.blocks"}},
		{name: "classes", edit2: replace("vocab_size_cond: 10", "vocab_size_cond: 12"), want: []string{"arch.vocab_size_cond", "cond_emb.weight"}},
		{name: "block-size", edit2: replace("block_size:\n  - 4\n  - 4", "block_size:\n  - 4\n  - 2"), want: []string{"arch.block_size"}},
		{name: "heads", edit2: replace("n_head: 2", "n_head: 3"), want: []string{"arch.body.block.n_head", "divisible"}},
		{name: "cls-emb", edit2: replace("shared_cls_emb: true", "shared_cls_emb: false"), want: []string{"arch.shared_cls_emb", "not implemented"}},
		{name: "cumsum", edit2: replace("  cumsum_depth_ctx: true\n", ""), want: []string{"arch.cumsum_depth_ctx"}},
		{name: "padding", edit2: replace("shared_tok_emb: true", "shared_tok_emb: true\n  use_padding_emb: true"), want: []string{"arch.use_padding_emb"}},
		{name: "gelu", edit2: replace("n_head: 2\n  head:", "n_head: 2\n      gelu: v2\n  head:"), want: []string{"arch.body.block.gelu"}},
		{name: "text", edit2: replace("block_size_cond: 1", "block_size_cond: 32"), want: []string{"arch.block_size_cond"}},
		{name: "type", edit2: replace("type: rq-transformer", "type: gpt"), want: []string{"arch.type"}},
		{name: "malformed", edit2: replace("arch:", "arch: [unclosed"), want: []string{"stage2/config.yaml", "malformed YAML"}},
		{name: "not-a-number", edit2: replace("embed_dim: 64", "embed_dim: wide"), want: []string{"stage2/config.yaml", "malformed YAML"}},
		{name: "empty", edit2: func(string) string { return "" }, want: []string{"stage2/config.yaml", "empty"}},
		{name: "vae-ch-mult", edit1: replace("  - 2\n    - 2\n", "  - 2\n    - 4\n"), want: []string{"stage1/config.yaml", "arch.ddconfig.ch_mult[3]", "encoder.down.3.block.0.conv1.weight"}},
		{name: "vae-attn", edit1: replace("attn_resolutions:\n    - 4", "attn_resolutions:\n    - 8"), want: []string{"arch.ddconfig.attn_resolutions"}},
		{name: "vae-res-blocks", edit1: replace("num_res_blocks: 2", "num_res_blocks: 3"), want: []string{"arch.ddconfig.num_res_blocks"}},
		{name: "vae-z", edit1: replace("z_channels: 32", "z_channels: 64"), want: []string{"arch.ddconfig.z_channels", "post_quant_conv.weight"}},
		{name: "vae-double-z", edit1: replace("double_z: false", "double_z: true"), want: []string{"arch.ddconfig.double_z"}},
		{name: "vae-separate", edit1: replace("shared_codebook: true", "shared_codebook: false"), want: []string{"arch.hparams.shared_codebook"}},
		{name: "vae-resolution", edit1: replace("resolution: 32", "resolution: 64"), want: []string{"arch.hparams.code_shape", "resolution"}},
		{name: "vae-malformed", edit1: replace("hparams:", "hparams: {"), want: []string{"stage1/config.yaml", "malformed YAML"}},
		{name: "stages", edit1: replace("n_embed: 128", "n_embed: 100"), want: []string{"arch.vocab_size", "arch.hparams.n_embed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyRelease(t, c.edit1, c.edit2)
			_, err := rq.LoadRelease(dir, cpu.New(1), rq.ReleaseOptions{Open: rqtest.Open})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			t.Log(err)
		})
	}
}

// What the official config path fills in: vocab_size from the dataset, the sampling defaults of
// main_sampling_fid (sampling.*) or of training (experiment.sample.*), an unconditional model's one row.
func TestRQReleaseConfigDefaults(t *testing.T) {
	data, err := os.ReadFile(rqTiny(rq.Stage2Config))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "  vocab_size: 128\n  block_size", "  block_size", 1)
	s += "sampling:\n  temp: 0.9\n  top_k: [50]\n  top_p: null\nexperiment:\n  sample:\n    top_k: 16384\n    top_p: 0.92\n"
	s = strings.Replace(s, "vocab_size_cond: 10", "vocab_size_cond: 0", 1)
	c, d, err := rq.ParseConfig(rq.Stage2Config, []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if c.V != 128 || c.CondRows != 1 || c.Classes() != 1 {
		t.Errorf("config %+v", c)
	}
	if d != (rq.Defaults{Temperature: 0.9, TopK: 50, TopP: 0.92}) {
		t.Errorf("defaults %+v", d)
	}
}

// writeArchive writes a .tar.gz of testdata/rq-tiny's release layout under top/ (the official archives'
// layout), optionally leaving a member out.
func writeArchive(t *testing.T, path, top string, skip string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tw.WriteHeader(&tar.Header{Name: top + "/", Typeflag: tar.TypeDir, Mode: 0o755}))
	for _, m := range []string{rq.Stage1Config, rq.Stage1Model, rq.Stage2Config, rq.Stage2Model, "golden.md"} {
		if m == skip {
			continue
		}
		data, err := os.ReadFile(rqTiny(m))
		must(err)
		must(tw.WriteHeader(&tar.Header{Name: top + "/" + m, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}))
		_, err = tw.Write(data)
		must(err)
	}
	must(tw.Close())
	must(zw.Close())
	must(f.Close())
}

// A .tar.gz of the release loads like the directory (the extracted model.pt files are removed); truncated,
// incomplete or non-gzip archives are errors naming what is wrong.
func TestRQReleaseArchive(t *testing.T) {
	dir := t.TempDir()
	arc := filepath.Join(dir, "rq-tiny.tar.gz")
	writeArchive(t, arc, "rq-tiny", "")
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if !rq.IsArchive(arc) || rq.IsArchive(rqTiny("stage1/config.yaml")) || !rq.IsRelease(arc) || !rq.IsRelease(rqTiny("")) ||
		rq.IsRelease(rqTiny("stage1")) {
		t.Error("IsArchive / IsRelease")
	}
	p, err := rq.LoadRelease(arc, cpu.New(1), rq.ReleaseOptions{Open: rqtest.Open, TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("extracted files left behind: %v", left)
	}
	g := testutil.OpenGolden(t, rqTiny("golden.safetensors"))
	o := core.NewOps(cpu.New(1))
	codes, err := p.Sample(context.Background(), o, rq.Request{Labels: g.Ints("ar.cond"), Sampling: rq.Greedy})
	if err != nil {
		t.Fatal(err)
	}
	testutil.IntsEqual(t, "ar.codes", codes.IDs, g.Ints("ar.codes"))

	// Members at the archive's root load too.
	root := filepath.Join(dir, "root.tar.gz")
	writeArchive(t, root, ".", "")
	if _, err := rq.LoadRelease(root, cpu.New(1), rq.ReleaseOptions{Open: rqtest.Open, TempDir: tmp}); err != nil {
		t.Errorf("archive without a top directory: %v", err)
	}

	data, err := os.ReadFile(arc)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(path string){
		"truncated": func(p string) { os.WriteFile(p, data[:len(data)/2], 0o644) },
		"incomplete": func(p string) {
			writeArchive(t, p, "rq-tiny", rq.Stage2Model)
		},
		"not-gzip": func(p string) { os.WriteFile(p, []byte("PK\x03\x04 not a tarball"), 0o644) },
		"corrupt": func(p string) {
			c := append([]byte(nil), data...)
			for i := len(c) / 3; i < len(c)/3+64; i++ {
				c[i] ^= 0x5a
			}
			os.WriteFile(p, c, 0o644)
		},
	}
	wants := map[string]string{"truncated": "truncated", "incomplete": "stage2/model.pt", "not-gzip": "gzip", "corrupt": "rq release"}
	for name, mk := range bad {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".tar.gz")
			mk(p)
			_, err := rq.LoadRelease(p, cpu.New(1), rq.ReleaseOptions{Open: rqtest.Open, TempDir: tmp})
			if err == nil || !strings.Contains(err.Error(), wants[name]) {
				t.Fatalf("error %v, want one mentioning %q", err, wants[name])
			}
			t.Log(err)
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("extracted files left behind: %v", left)
			}
		})
	}
	// A size guard: a model.pt larger than allowed is refused before it is extracted.
	if _, err := rq.OpenRelease(arc, rq.ReleaseOptions{TempDir: tmp, MaxModelBytes: 1000}); err == nil || !strings.Contains(err.Error(), "allowed") {
		t.Errorf("size guard: %v", err)
	}
	// The EMA weights are asked of the opener by name, for the RQ-Transformer only: the official sampler
	// loads the RQ-VAE from state_dict even with --ema.
	var stage1, stage2 string
	open := func(path, key string) (core.WeightSource, func() error, error) {
		src, closeFn, err := rqtest.Open(path, "state_dict")
		if err != nil {
			return nil, nil, err
		}
		if _, vae := src.Shape("quantizer.codebooks.0.weight"); vae || slices.ContainsFunc(src.Names(), func(n string) bool { return strings.HasPrefix(n, "encoder.") }) {
			stage1 = key
		} else {
			stage2 = key
		}
		return src, closeFn, nil
	}
	if _, err := rq.LoadRelease(arc, cpu.New(1), rq.ReleaseOptions{Open: open, EMA: true, TempDir: tmp}); err != nil ||
		stage2 != "state_dict_ema" || stage1 != "state_dict" {
		t.Errorf("EMA: %v, keys asked: stage1 %q, stage2 %q", err, stage1, stage2)
	}
	if _, err := rq.LoadRelease(filepath.Join(dir, "none"), cpu.New(1), rq.ReleaseOptions{Open: rqtest.Open}); err == nil {
		t.Error("a missing path loaded")
	}
}

// A bad tensor in a release names its file and the tensor.
func TestRQReleaseNamesTheFile(t *testing.T) {
	r, err := rq.OpenRelease(rqTiny(""), rq.ReleaseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	good2, good1 := mapOf(t, rqTiny("stage2.pth")), mapOf(t, rqTiny("stage1.pth"))
	m2 := clone(good2)
	m2["head_mlp.bias"].Data[2] = float32(math.NaN())
	if _, err := r.Load(m2, good1, cpu.New(1)); err == nil || !strings.Contains(err.Error(), "stage2/model.pt") || !strings.Contains(err.Error(), "head_mlp.bias") {
		t.Errorf("stage 2: %v", err)
	}
	m1 := clone(good1)
	delete(m1, "decoder.conv_out.bias")
	if _, err := r.Load(good2, m1, cpu.New(1)); err == nil || !strings.Contains(err.Error(), "stage1/model.pt") || !strings.Contains(err.Error(), "decoder.conv_out.bias") {
		t.Errorf("stage 1: %v", err)
	}
	if _, err := r.Load(good2, good1, cpu.New(1)); err != nil {
		t.Errorf("good tensors: %v", err)
	}
}

// Image completion: the encoded image's codes at the kept positions, the sampler's after them; the same
// as sampling with those codes as the prefix.
func TestRQComplete(t *testing.T) {
	p, _ := tinyGenerator(t)
	g := testutil.OpenGolden(t, rqTiny("golden.safetensors"))
	o := core.NewOps(cpu.New(1))
	labels := g.Ints("tf.cond")
	const keep = 6
	x := o.Upload(g.F32("vae.x"))
	got, err := p.Complete(context.Background(), o, x, keep, rq.Request{Labels: labels, Sampling: rq.Greedy})
	if err != nil {
		t.Fatal(err)
	}
	enc := rq.Codes{B: 2, H: 4, W: 4, D: 4, IDs: g.Ints("vae.codes")}
	want, err := p.Sample(context.Background(), o, rq.Request{Labels: labels, Sampling: rq.Greedy, Prefix: rq.PrefixOf(enc, keep)})
	if err != nil {
		t.Fatal(err)
	}
	testutil.IntsEqual(t, "completed codes", got.IDs, want.IDs)
	for b := range 2 {
		testutil.IntsEqual(t, fmt.Sprintf("kept codes of image %d", b), got.Image(b)[:keep*4], enc.Image(b)[:keep*4])
	}
	if _, err := p.Complete(context.Background(), o, x, 17, rq.Request{Labels: labels, Sampling: rq.Greedy}); err == nil {
		t.Error("keep 17 of 16 positions: no error")
	}
}
