package mar_test

import (
	"math"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/mar"
	"github.com/webvar/webvar/internal/testutil"
)

// mapOf reads every tensor of a checkpoint into memory, for tests that break one.
func mapOf(t *testing.T, path string) core.MapSource {
	src := testutil.Source(t, path)
	m := core.MapSource{}
	for _, n := range src.Names() {
		h, err := src.Load(n)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = h
	}
	return m
}

// Bad MAR checkpoints give errors naming the tensor: missing, wrong shape, non-finite, unknown; a
// checkpoint of another family is not detected as MAR; a VAE whose latent width does not fit the tokens is
// named too.
func TestBadMARCheckpoints(t *testing.T) {
	good := mapOf(t, testutil.MARTiny("mar.pth"))
	vae := mapOf(t, testutil.MARTiny("vae.pth"))
	opt := mar.Options{EncHeads: 4, DecHeads: 4}
	clone := func() core.MapSource {
		m := core.MapSource{}
		for k, v := range good {
			m[k] = core.HostTensor{Shape: v.Shape.Clone(), Data: append([]float32(nil), v.Data...)}
		}
		return m
	}
	cases := []struct {
		name, want string
		edit       func(m core.MapSource)
	}{
		{"missing", "decoder_blocks.1.mlp.fc2.weight", func(m core.MapSource) { delete(m, "decoder_blocks.1.mlp.fc2.weight") }},
		{"shape", "diffloss.net.res_blocks.0.mlp.0.weight", func(m core.MapSource) {
			m["diffloss.net.res_blocks.0.mlp.0.weight"] = core.HostTensor{Shape: core.Shape{64, 63}, Data: make([]float32, 64*63)}
		}},
		{"nan", "encoder_blocks.0.attn.qkv.weight", func(m core.MapSource) {
			m["encoder_blocks.0.attn.qkv.weight"].Data[5] = float32(math.NaN())
		}},
		{"unknown", "extra.weight", func(m core.MapSource) { m["extra.weight"] = core.HostTensor{Shape: core.Shape{1}, Data: []float32{0}} }},
		{"heads", "heads", func(m core.MapSource) {}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := clone()
			c.edit(m)
			o := opt
			if c.name == "heads" {
				o = mar.Options{EncHeads: 5}
			}
			_, err := mar.LoadPipeline(m, vae, cpu.New(1), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s", err, c.want)
			}
		})
	}
	if mar.Detect(testutil.Source(t, testutil.FlexVARTiny("var.pth"))) {
		t.Error("a FlexVAR checkpoint detected as MAR")
	}
	// A VAE whose latents (embed 16) do not split the model's 12-value tokens.
	m := clone()
	m["z_proj.weight"] = core.HostTensor{Shape: core.Shape{64, 12}, Data: make([]float32, 64*12)}
	m["diffloss.net.input_proj.weight"] = core.HostTensor{Shape: core.Shape{64, 12}, Data: make([]float32, 64*12)}
	m["diffloss.net.final_layer.linear.weight"] = core.HostTensor{Shape: core.Shape{24, 64}, Data: make([]float32, 24*64)}
	m["diffloss.net.final_layer.linear.bias"] = core.HostTensor{Shape: core.Shape{24}, Data: make([]float32, 24)}
	if _, err := mar.LoadPipeline(m, vae, cpu.New(1), opt); err == nil || !strings.Contains(err.Error(), "patches") {
		t.Errorf("mismatched VAE: %v", err)
	}
}
