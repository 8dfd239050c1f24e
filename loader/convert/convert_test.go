package convert

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/loader"
	"github.com/webvar/webvar/weights"
)

func convertTiny(t *testing.T, opt ConvertOptions) (*weights.Model, []TensorReport) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "w")
	var reps []TensorReport
	opt.OnTensor = func(r TensorReport) { reps = append(reps, r) }
	if _, err := Convert(testutil.VarTiny("var.pth"), testutil.VarTiny("vae.pth"), dir, opt); err != nil {
		t.Fatal(err)
	}
	m, err := weights.Load(context.Background(), weights.DirSource(dir), weights.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m, reps
}

func TestConvertChoosesStoragePerTensor(t *testing.T) {
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("class %d", i)
	}
	m, reps := convertTiny(t, ConvertOptions{Quant: weights.Int4, KeepF32: []string{"var.head.weight"}, ClassNames: names})
	byName := map[string]TensorReport{}
	for _, r := range reps {
		byName[r.Name] = r
	}
	for name, want := range map[string]weights.Scheme{
		"var.blocks.0.attn.mat_qkv.weight": weights.Int4, // a Linear weight
		"var.head.weight":                  weights.F32,  // -keep-f32
		"var.blocks.0.attn.q_bias":         weights.F32,  // small
		"var.class_emb.weight":             weights.F32,  // an embedding, 1408 values: small
		"vae.decoder.conv_in.weight":       weights.F16,  // a conv, f16 within the error bound
	} {
		if got := byName[name].Scheme; got != want {
			t.Errorf("%s stored as %q, want %q", name, got, want)
		}
	}
	for _, skipped := range []string{"var.lvl_1L", "var.attn_bias_for_masking", "vae.quantize.ema_vocab_hit_SV"} {
		if _, ok := m.Shape(skipped); ok {
			t.Errorf("derivable tensor %s was written", skipped)
		}
	}
	for _, r := range reps {
		if r.Scheme == weights.F16 && r.RelRMS > F16MaxRelRMS {
			t.Errorf("%s stored f16 with rel RMS %g", r.Name, r.RelRMS)
		}
	}
	got, err := ClassNames(m.Manifest())
	if err != nil || fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("class names %v, %v", got, err)
	}
	varSrc, vaeSrc, pn, err := Converted(m)
	if err != nil || fmt.Sprint(pn) != "[1 2 3 4]" {
		t.Fatalf("Converted: %v %v", pn, err)
	}
	if _, ok := varSrc.Shape("blocks.0.attn.mat_qkv.weight"); !ok {
		t.Fatal("var view lacks its tensors")
	}
	if _, ok := vaeSrc.Shape("decoder.conv_in.weight"); !ok {
		t.Fatal("vae view lacks its tensors")
	}
}

func TestConvertRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		opt ConvertOptions
		msg string
	}{
		{ConvertOptions{Quant: "int3"}, "int3"},
		{ConvertOptions{KeepF32: []string{"["}}, "keep-f32"},
		{ConvertOptions{ClassNames: []string{"one"}}, "class names"},
		{ConvertOptions{PatchNums: []int{1, 2, 3, 5}}, "patch_nums"},
	} {
		_, err := Convert(testutil.VarTiny("var.pth"), testutil.VarTiny("vae.pth"), filepath.Join(dir, "x"), c.opt)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: %v (want an error mentioning %q)", c.opt, err, c.msg)
		}
	}
}

// DownloadBytes must predict Convert's chunks to the byte for every scheme, with and without the
// encoder, from the unconverted checkpoints.
func TestDownloadBytesMatchesConvert(t *testing.T) {
	vc, err := loader.Open(testutil.VarTiny("var.pth"))
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	ac, err := loader.Open(testutil.VarTiny("vae.pth"))
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	for _, opt := range []ConvertOptions{
		{Quant: weights.F32}, {Quant: weights.F16}, {Quant: weights.Int8, NoEncoder: true},
		{Quant: weights.Int4, KeepF32: []string{"var.head.weight"}},
	} {
		t.Run(fmt.Sprintf("%s-noenc=%v", opt.Quant, opt.NoEncoder), func(t *testing.T) {
			m, _ := convertTiny(t, opt)
			var chunks int64
			for _, c := range m.Manifest().Chunks {
				chunks += c.Size
			}
			got, err := DownloadBytes(vc.WeightSource(), ac.WeightSource(), opt)
			if err != nil {
				t.Fatal(err)
			}
			if got != chunks {
				t.Fatalf("DownloadBytes %d, Convert wrote %d bytes of chunks", got, chunks)
			}
		})
	}
}

// QuantizedView must serve what a converted directory serves: the same packed weights and the same
// dequantized values, and unquantizable tensors untouched.
func TestQuantizedViewMatchesConverted(t *testing.T) {
	vc, err := loader.Open(testutil.VarTiny("var.pth"))
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	view, err := QuantizedView(vc.WeightSource(), weights.Int4)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := convertTiny(t, ConvertOptions{Quant: weights.Int4})
	varSrc, _, _, err := Converted(m)
	if err != nil {
		t.Fatal(err)
	}
	qv, qc := view.(core.QuantSource), varSrc.(core.QuantSource)
	for _, name := range []string{"blocks.1.ffn.fc2.weight", "head.weight", "class_emb.weight"} {
		a, okA := qv.Quant(name)
		b, okB := qc.Quant(name)
		if okA != okB || fmt.Sprint(a.Codes) != fmt.Sprint(b.Codes) || fmt.Sprint(a.Scales) != fmt.Sprint(b.Scales) {
			t.Errorf("%s: view quantized=%v, converted quantized=%v, or their packing differs", name, okA, okB)
		}
		if okA {
			la, _ := view.Load(name)
			lb, _ := varSrc.Load(name)
			testutil.AbsClose(t, name+" dequantized", la.Data, lb.Data, 0)
		}
	}
	if _, err := QuantizedView(vc.WeightSource(), weights.F16); err == nil {
		t.Error("QuantizedView accepted f16")
	}
}
