// Command mkrandom writes random checkpoints with the official VAR key layout and shapes, as safetensors:
// real-size inputs for measuring conversion and speed without the official weights (speed and memory do
// not depend on training). The tensors and values are internal/randmodel's, the ones `webvar bench
// -model d16` builds in memory.
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
	"os"
	"path/filepath"

	"github.com/webvar/webvar/internal/randmodel"
)

// writeSafetensors streams random tensors into path: the header is computed from the shapes first, then
// each tensor's data is generated and written in turn.
func writeSafetensors(path string, ts []randmodel.Tensor, seed uint64) error {
	header := map[string]any{}
	var off int64
	for _, t := range ts {
		n := randmodel.Bytes([]randmodel.Tensor{t})
		header[t.Name] = map[string]any{"dtype": "F32", "shape": t.Shape, "data_offsets": []int64{off, off + n}}
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
	var buf [4]byte
	for _, t := range ts {
		// The values of randmodel.Source with the same seed: a file written here benchmarks like the
		// in-memory model of `webvar bench -model`.
		for _, v := range t.Values(seed) {
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(v))
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
	varSpec, vaeSpec := randmodel.Official(depth)
	for _, f := range []struct {
		name string
		ts   []randmodel.Tensor
		seed uint64
	}{
		{"var.safetensors", randmodel.VARTensors(varSpec), randmodel.SeedVAR},
		{"vae.safetensors", randmodel.VAETensors(vaeSpec), randmodel.SeedVAE},
	} {
		if err := writeSafetensors(filepath.Join(*out, f.name), f.ts, f.seed); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("wrote", filepath.Join(*out, f.name))
	}
}
