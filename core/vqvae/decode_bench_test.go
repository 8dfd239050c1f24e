package vqvae_test

import (
	"math/rand/v2"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/bench"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/vqvae"
	"github.com/webvar/webvar/internal/randmodel"
)

// loadD16Decoder builds VAR-d16's VQVAE (vae_ch160v4096z32, no encoder) with random weights on be and
// returns it with a random f_hat [1, 32, 16, 16] and the decode's GFLOP (bench.DecodeFLOPs).
func loadD16Decoder(b *testing.B, be core.Backend) (*vqvae.Model, *core.Tensor, float64) {
	b.Helper()
	vs, as := randmodel.Official(16)
	as.Encoder = false
	src, err := randmodel.NewSource(randmodel.VAETensors(as), randmodel.SeedVAE)
	if err != nil {
		b.Fatal(err)
	}
	m, err := vqvae.Load(core.NewWeights(src, be), vs.PatchNums)
	if err != nil {
		b.Fatal(err)
	}
	p := vs.PatchNums[len(vs.PatchNums)-1]
	flops, err := bench.DecodeFLOPs(src, p, 1)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]float32, as.Cvae*p*p)
	for i := range data {
		data[i] = float32(r.NormFloat64())
	}
	fhat, err := be.Upload(core.HostTensor{Shape: core.Shape{1, as.Cvae, p, p}, Data: data})
	if err != nil {
		b.Fatal(err)
	}
	return m, fhat, float64(flops) / 1e9
}

// BenchmarkDecodeD16 is one 256x256 decode of VAR-d16's VQVAE on New's CPU backend (all cores), the
// decode part of `webvar bench -model d16 -backend cpu`. The GFLOP/s count the matrix products only.
func BenchmarkDecodeD16(b *testing.B) {
	be := cpu.New(0)
	m, fhat, gflop := loadD16Decoder(b, be)
	for b.Loop() {
		o := core.NewOps(be)
		img := m.Decode(o, fhat)
		if err := o.Err(); err != nil {
			b.Fatal(err)
		}
		o.Free(img)
	}
	b.ReportMetric(gflop*float64(b.N)/b.Elapsed().Seconds(), "GFLOP/s")
}
