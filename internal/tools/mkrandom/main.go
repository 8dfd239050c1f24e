// Command mkrandom writes random checkpoints with the official VAR key layout and shapes, as safetensors:
// real-size inputs for measuring conversion and speed without the official weights (speed and memory do
// not depend on training).
//
//	go run ./internal/tools/mkrandom -model d16 -out /tmp/d16   # writes var.safetensors and vae.safetensors
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
)

type tensor struct {
	name  string
	shape []int
	std   float64
	mean  float64
}

func numel(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// varTensors lists a VAR transformer of the given depth (width 64*depth, heads = depth, l2-norm attention,
// non-shared AdaLN), 1000 classes, codebook v, latent cvae, L tokens over k scales.
func varTensors(depth, v, cvae, l, k int) []tensor {
	c := 64 * depth
	w := func(in int) float64 { return 1 / math.Sqrt(float64(in)) }
	ts := []tensor{
		{"pos_start", []int{1, 1, c}, 0.02, 0}, {"pos_1LC", []int{1, l, c}, 0.02, 0},
		{"lvl_1L", []int{1, l}, 0, 0}, {"attn_bias_for_masking", []int{1, 1, l, l}, 0, 0},
		{"word_embed.weight", []int{c, cvae}, w(cvae), 0}, {"word_embed.bias", []int{c}, 0.02, 0},
		{"class_emb.weight", []int{1001, c}, 0.02, 0}, {"lvl_embed.weight", []int{k, c}, 0.02, 0},
	}
	for i := 0; i < depth; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		ts = append(ts,
			tensor{p + "attn.scale_mul_1H11", []int{1, depth, 1, 1}, 0, 2.3},
			tensor{p + "attn.q_bias", []int{c}, 0.02, 0}, tensor{p + "attn.v_bias", []int{c}, 0.02, 0},
			tensor{p + "attn.zero_k_bias", []int{c}, 0, 0},
			tensor{p + "attn.mat_qkv.weight", []int{3 * c, c}, w(c), 0},
			tensor{p + "attn.proj.weight", []int{c, c}, w(c), 0}, tensor{p + "attn.proj.bias", []int{c}, 0.02, 0},
			tensor{p + "ffn.fc1.weight", []int{4 * c, c}, w(c), 0}, tensor{p + "ffn.fc1.bias", []int{4 * c}, 0.02, 0},
			tensor{p + "ffn.fc2.weight", []int{c, 4 * c}, w(4 * c), 0}, tensor{p + "ffn.fc2.bias", []int{c}, 0.02, 0},
			tensor{p + "ada_lin.1.weight", []int{6 * c, c}, w(c) * 0.1, 0}, tensor{p + "ada_lin.1.bias", []int{6 * c}, 0.02, 0},
		)
	}
	return append(ts,
		tensor{"head_nm.ada_lin.1.weight", []int{2 * c, c}, w(c) * 0.1, 0}, tensor{"head_nm.ada_lin.1.bias", []int{2 * c}, 0.02, 0},
		tensor{"head.weight", []int{v, c}, w(c), 0}, tensor{"head.bias", []int{v}, 0.02, 0})
}

// vaeTensors lists VAR's VQVAE: ch, ch_mult, num_res_blocks 2, attention at the coarsest level and in mid,
// 4 partially shared Phis.
func vaeTensors(ch int, mult []int, v, z int) []tensor {
	var ts []tensor
	conv := func(name string, out, in, k int) {
		ts = append(ts, tensor{name + ".weight", []int{out, in, k, k}, 1 / math.Sqrt(float64(in*k*k)), 0},
			tensor{name + ".bias", []int{out}, 0.02, 0})
	}
	norm := func(name string, c int) {
		ts = append(ts, tensor{name + ".weight", []int{c}, 0.1, 1}, tensor{name + ".bias", []int{c}, 0.1, 0})
	}
	res := func(name string, in, out int) {
		norm(name+".norm1", in)
		conv(name+".conv1", out, in, 3)
		norm(name+".norm2", out)
		conv(name+".conv2", out, out, 3)
		if in != out {
			conv(name+".nin_shortcut", out, in, 1)
		}
	}
	attn := func(name string, c int) {
		norm(name+".norm", c)
		conv(name+".qkv", 3*c, c, 1)
		conv(name+".proj_out", c, c, 1)
	}
	n := len(mult)
	// Encoder.
	conv("encoder.conv_in", ch, 3, 3)
	in := ch
	for i := 0; i < n; i++ {
		out := ch * mult[i]
		for j := 0; j < 2; j++ {
			res(fmt.Sprintf("encoder.down.%d.block.%d", i, j), in, out)
			in = out
			if i == n-1 {
				attn(fmt.Sprintf("encoder.down.%d.attn.%d", i, j), in)
			}
		}
		if i != n-1 {
			conv(fmt.Sprintf("encoder.down.%d.downsample.conv", i), in, in, 3)
		}
	}
	res("encoder.mid.block_1", in, in)
	attn("encoder.mid.attn_1", in)
	res("encoder.mid.block_2", in, in)
	norm("encoder.norm_out", in)
	conv("encoder.conv_out", z, in, 3)
	// Decoder.
	in = ch * mult[n-1]
	conv("decoder.conv_in", in, z, 3)
	res("decoder.mid.block_1", in, in)
	attn("decoder.mid.attn_1", in)
	res("decoder.mid.block_2", in, in)
	for i := n - 1; i >= 0; i-- {
		out := ch * mult[i]
		for j := 0; j < 3; j++ {
			res(fmt.Sprintf("decoder.up.%d.block.%d", i, j), in, out)
			in = out
			if i == n-1 {
				attn(fmt.Sprintf("decoder.up.%d.attn.%d", i, j), in)
			}
		}
		if i != 0 {
			conv(fmt.Sprintf("decoder.up.%d.upsample.conv", i), in, in, 3)
		}
	}
	norm("decoder.norm_out", in)
	conv("decoder.conv_out", 3, in, 3)
	conv("quant_conv", z, z, 3)
	conv("post_quant_conv", z, z, 3)
	ts = append(ts, tensor{"quantize.embedding.weight", []int{v, z}, 0.5, 0}, tensor{"quantize.ema_vocab_hit_SV", []int{10, v}, 0, 0})
	for i := 0; i < 4; i++ {
		conv(fmt.Sprintf("quantize.quant_resi.qresi_ls.%d", i), z, z, 3)
	}
	return ts
}

// writeSafetensors streams random tensors into path: the header is computed from the shapes first, then
// each tensor's data is generated and written in turn.
func writeSafetensors(path string, ts []tensor, seed int64) error {
	header := map[string]any{}
	var off int64
	for _, t := range ts {
		n := int64(numel(t.shape)) * 4
		header[t.name] = map[string]any{"dtype": "F32", "shape": t.shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	h, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	binary.Write(bw, binary.LittleEndian, uint64(len(h)))
	bw.Write(h)
	r := rand.New(rand.NewSource(seed))
	var buf [4]byte
	for _, t := range ts {
		for i := numel(t.shape); i > 0; i-- {
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(float32(t.mean+t.std*r.NormFloat64())))
			bw.Write(buf[:])
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func main() {
	model := flag.String("model", "d16", "d16, d20, d24 or d30 (256x256, 10 scales, VQVAE ch 160)")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	depth := map[string]int{"d16": 16, "d20": 20, "d24": 24, "d30": 30}[*model]
	if depth == 0 || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: mkrandom -model d16|d20|d24|d30 -out DIR")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, f := range []struct {
		name string
		ts   []tensor
	}{
		{"var.safetensors", varTensors(depth, 4096, 32, 680, 10)},
		{"vae.safetensors", vaeTensors(160, []int{1, 1, 2, 2, 4}, 4096, 32)},
	} {
		if err := writeSafetensors(filepath.Join(*out, f.name), f.ts, int64(len(f.name))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("wrote", filepath.Join(*out, f.name))
	}
}
