package weights

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/webvar/webvar/core"
)

// testChunkBytes is small so that the test model spans several chunks and has tensors larger than one.
const testChunkBytes = 4096

// fixture is what writeFixture wrote: the float tensors as given and the quantized ones as packed.
type fixture struct {
	dir     string
	m       *Manifest
	floats  map[string]core.HostTensor
	schemes map[string]Scheme
	quants  map[string]core.QuantHost
	// convs are quantized tensors of rank > 2 (AddQuantAs): their packed [M, K] form and stored shape.
	convs map[string]quantAs
}

type quantAs struct {
	q     core.QuantHost
	shape core.Shape
}

func randTensor(r *rand.Rand, shape ...int) core.HostTensor {
	t := core.HostTensor{Shape: core.Shape(shape), Data: make([]float32, core.Shape(shape).Numel())}
	for i := range t.Data {
		t.Data[i] = float32(r.NormFloat64())
	}
	return t
}

// writeFixture writes a small model covering every scheme, a scalar, an empty tensor, a tensor larger
// than a chunk and quantized shapes whose K is not a multiple of the block.
func writeFixture(t testing.TB, dir string) *fixture {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	fx := &fixture{dir: dir, floats: map[string]core.HostTensor{}, schemes: map[string]Scheme{}, quants: map[string]core.QuantHost{},
		convs: map[string]quantAs{}}
	w, err := NewWriter(dir, WriterOptions{ChunkBytes: testChunkBytes})
	if err != nil {
		t.Fatal(err)
	}
	addF := func(name string, s Scheme, ht core.HostTensor) {
		t.Helper()
		if err := w.AddF32(name, ht, s); err != nil {
			t.Fatal(err)
		}
		fx.floats[name], fx.schemes[name] = ht, s
	}
	// Plain quantization gives float32 scales; the converter's options give scales the writer stores as
	// float16.
	addQ := func(name string, s core.QuantScheme, ht core.HostTensor, opt core.QuantizeOptions) {
		t.Helper()
		q, err := core.QuantizeWith(ht, s, opt)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddQuant(name, q); err != nil {
			t.Fatal(err)
		}
		fx.quants[name] = q
	}
	addConv := func(name string, s core.QuantScheme, ht core.HostTensor, opt core.QuantizeOptions) {
		t.Helper()
		M := ht.Shape[0]
		q, err := core.QuantizeWith(core.HostTensor{Shape: core.Shape{M, len(ht.Data) / M}, Data: ht.Data}, s, opt)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddQuantAs(name, q, ht.Shape); err != nil {
			t.Fatal(err)
		}
		fx.convs[name] = quantAs{q, ht.Shape}
	}
	addF("embed.weight", F32, randTensor(r, 12, 20))
	exact := randTensor(r, 4, 8)
	for i := range exact.Data {
		exact.Data[i] = float32(r.IntN(2048)-1024) / 64 // 11 significant bits: exact in half
	}
	addF("norm.exact", F16, exact)
	addF("blocks.0.attn.proj.weight", F16, randTensor(r, 9, 7))
	plain, f16 := core.QuantizeOptions{}, core.QuantizeOptions{Search: true, F16Scales: true}
	addQ("blocks.0.ffn.fc1.weight", core.QuantInt8, randTensor(r, 6, 70), plain)
	addF("big.weight", F32, randTensor(r, 40, 40)) // 6400 bytes > testChunkBytes
	addQ("blocks.0.ffn.fc2.weight", core.QuantInt4, randTensor(r, 5, 40), f16)
	addF("scalar", F32, core.HostTensor{Shape: core.Shape{}, Data: []float32{3.5}})
	addF("empty", F32, core.HostTensor{Shape: core.Shape{0, 3}, Data: []float32{}})
	addQ("big.quant", core.QuantInt8, randTensor(r, 40, 33), plain) // 40*(16+2)*4 = 2880 bytes
	addQ("blocks.1.ffn.fc1.weight", core.QuantInt8, randTensor(r, 3, 64), f16)
	addF("head.bias", F16, randTensor(r, 100))
	addConv("decoder.conv_in.weight", core.QuantInt4, randTensor(r, 5, 3, 3, 3), f16)   // K = 27: one padded block
	addConv("decoder.up.conv.weight", core.QuantInt8, randTensor(r, 4, 8, 3, 3), plain) // K = 72
	m, err := w.Close("var", map[string]any{"patch_nums": []int{1, 2, 3}, "depth": 2, "name": "tiny"},
		map[string]string{"class.0": "tench", "cfg": "4.0"})
	if err != nil {
		t.Fatal(err)
	}
	fx.m = m
	return fx
}

// rawManifest encodes m without validation, for tests that need an invalid manifest on disk.
func rawManifest(t testing.TB, m *Manifest) []byte {
	t.Helper()
	b, err := msgpack.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readManifestFile(t testing.TB, dir string) *Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// countingSource counts Open calls per file and can hide sizes, as a server without Content-Length.
type countingSource struct {
	Source
	hideSize bool
	mu       sync.Mutex
	opens    map[string]int
}

func (c *countingSource) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	c.mu.Lock()
	if c.opens == nil {
		c.opens = map[string]int{}
	}
	c.opens[name]++
	c.mu.Unlock()
	rc, size, err := c.Source.Open(ctx, name)
	if c.hideSize {
		size = -1
	}
	return rc, size, err
}

func (c *countingSource) chunkOpens() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for name, k := range c.opens {
		if name != ManifestFile {
			n += k
		}
	}
	return n
}

// memCache is a Cache in memory that counts hits.
type memCache struct {
	mu   sync.Mutex
	m    map[string][]byte
	hits atomic.Int64
}

func (c *memCache) Get(name, sha string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[name+"@"+sha]
	if ok {
		c.hits.Add(1)
	}
	return bytes.Clone(b), ok
}

func (c *memCache) Put(name, sha string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	c.m[name+"@"+sha] = bytes.Clone(data)
}

// halfULP is the spacing of half-precision values around v (subnormal spacing near zero).
func halfULP(v float32) float64 {
	a := math.Abs(float64(v))
	if a < 1.0/(1<<14) {
		return 1.0 / (1 << 24)
	}
	e := math.Floor(math.Log2(a))
	return math.Ldexp(1, int(e)-10)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func msgpackMarshal(v any) ([]byte, error) { return msgpack.Marshal(v) }
