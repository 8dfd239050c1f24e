package loader

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
)

// checkAgainstGolden compares a checkpoint's tensor list with a golden.md table: same names, dtypes and
// shapes, and (for .pth, where both are state_dict order) the same order.
func checkAgainstGolden(t *testing.T, c *Checkpoint, want []goldenEntry, ordered bool) {
	t.Helper()
	got := c.Tensors()
	if len(got) != len(want) {
		t.Fatalf("%d tensors, golden.md lists %d", len(got), len(want))
	}
	for i, w := range want {
		info, ok := c.Info(w.name)
		if !ok {
			t.Errorf("tensor %q missing", w.name)
			continue
		}
		if info.DType != w.dtype || !slices.Equal(info.Shape, w.shape) {
			t.Errorf("%s: %s %v, golden.md says %s %v", w.name, info.DType, info.Shape, w.dtype, w.shape)
		}
		if ordered && got[i].Name != w.name {
			t.Errorf("tensor %d is %q, golden.md order has %q", i, got[i].Name, w.name)
		}
	}
}

func TestFixtureVarPTH(t *testing.T) {
	c, err := Open(varPTH)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Format() != "pth" {
		t.Fatalf("format %q", c.Format())
	}
	checkAgainstGolden(t, c, readGolden(t, "### var.pth"), true)
	if len(c.Tensors()) != 38 {
		t.Fatalf("%d tensors, want 38", len(c.Tensors()))
	}
	for name, shape := range map[string][]int{
		"pos_1LC": {1, 30, 128}, "lvl_1L": {1, 30}, "class_emb.weight": {11, 128},
		"blocks.0.attn.mat_qkv.weight": {384, 128}, "head.weight": {64, 128},
	} {
		info, ok := c.Info(name)
		if !ok || !slices.Equal(info.Shape, shape) {
			t.Errorf("%s: %v %v, want %v", name, info, ok, shape)
		}
	}

	w, err := c.Float32("blocks.0.attn.mat_qkv.weight")
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 384*128 {
		t.Fatalf("len %d", len(w))
	}
	nonzero := 0
	for _, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("non-finite weight %v", v)
		}
		if v != 0 {
			nonzero++
		}
	}
	if nonzero < len(w)/2 {
		t.Fatalf("only %d of %d weights are non-zero: data read from the wrong place?", nonzero, len(w))
	}

	// lvl_1L is the scale index of each of the 30 tokens for patch_nums (1, 2, 3, 4).
	lvl, err := c.Int64("lvl_1L")
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for s, pn := range []int{1, 2, 3, 4} {
		for range pn * pn {
			want = append(want, int64(s))
		}
	}
	if !slices.Equal(lvl, want) {
		t.Fatalf("lvl_1L = %v, want %v", lvl, want)
	}
	lvlF, err := c.Float32("lvl_1L")
	if err != nil || lvlF[29] != 3 {
		t.Fatalf("lvl_1L as float32: %v %v", lvlF, err)
	}

	// The training mask is 0 where level(key) <= level(query) and -inf elsewhere.
	mask, err := c.Host("attn_bias_for_masking")
	if err != nil {
		t.Fatal(err)
	}
	if !mask.Shape.Equal([]int{1, 1, 30, 30}) || len(mask.Data) != 900 {
		t.Fatalf("mask shape %v, %d values", mask.Shape, len(mask.Data))
	}
	for q := range 30 {
		for k := range 30 {
			v := mask.Data[q*30+k]
			if (want[k] <= want[q]) != (v == 0) || (v != 0 && !math.IsInf(float64(v), -1)) {
				t.Fatalf("mask[%d,%d] = %v", q, k, v)
			}
		}
	}

	if _, err := c.Int64("head.weight"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Int64 of a float tensor: %v", err)
	}
}

func TestFixtureVaePTH(t *testing.T) {
	c, err := Open(vaePTH)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkAgainstGolden(t, c, readGolden(t, "### vae.pth"), true)
	for name, shape := range map[string][]int{
		"quantize.embedding.weight": {64, 8}, "decoder.conv_out.weight": {3, 32, 3, 3}, "quantize.ema_vocab_hit_SV": {4, 64},
	} {
		info, _ := c.Info(name)
		if !slices.Equal(info.Shape, shape) || info.DType != F32 {
			t.Errorf("%s: %v, want F32 %v", name, info, shape)
		}
	}
	// Every tensor reads (which also checks every storage's CRC-32) and is finite.
	for _, info := range c.Tensors() {
		h, err := c.Host(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Data) != h.Shape.Numel() {
			t.Fatalf("%s: %d values for shape %v", info.Name, len(h.Data), h.Shape)
		}
		for _, v := range h.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: non-finite value %v", info.Name, v)
			}
		}
	}
}

func TestFixtureSafetensors(t *testing.T) {
	c, err := Open(goldenST)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Format() != "safetensors" {
		t.Fatalf("format %q", c.Format())
	}
	checkAgainstGolden(t, c, readGolden(t, "## Tensors"), false)
	if md := c.Metadata(); md["fixture"] != "var-tiny" {
		t.Errorf("metadata %v", md)
	}

	silu, err := c.Float32("op.silu.in")
	if err != nil {
		t.Fatal(err)
	}
	if len(silu) != 101 {
		t.Fatalf("len %d", len(silu))
	}
	for i, v := range silu {
		if want := -10 + 20*float64(i)/100; math.Abs(float64(v)-want) > 1e-6 {
			t.Fatalf("op.silu.in[%d] = %v, want %v", i, v, want)
		}
	}

	idx, err := c.Int64("vae.idx.s0")
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := c.Info("vae.idx.s0"); info.DType != I64 || !slices.Equal(info.Shape, []int{2, 1}) || len(idx) != 2 {
		t.Fatalf("vae.idx.s0: %v %v", info, idx)
	}
	for _, v := range idx {
		if v < 0 || v >= 64 {
			t.Fatalf("token id %d outside the 64-entry codebook", v)
		}
	}

	// Scalars (shape []) for the sampling settings.
	for name, want := range map[string]float32{"ar0.cfg": 0, "ar1.cfg": 1.5, "ar2.cfg": 4} {
		h, err := c.Host(name)
		if err != nil || len(h.Shape) != 0 || len(h.Data) != 1 || h.Data[0] != want {
			t.Errorf("%s = %v %v, want scalar %v", name, h, err, want)
		}
	}
	if seed, err := c.Int64("ar0.g_seed"); err != nil || !slices.Equal(seed, []int64{0}) {
		t.Errorf("ar0.g_seed = %v %v", seed, err)
	}

	// Tensors() is in data order.
	var prev int64 = -1
	for _, info := range c.Tensors() {
		off := c.byName[info.Name].st.off
		if off <= prev {
			t.Fatalf("%s at %d after %d: not in data order", info.Name, off, prev)
		}
		prev = off
	}
}

// The format comes from the content, not the file name.
func TestOpenSniffsContent(t *testing.T) {
	dir := t.TempDir()
	for src, dst := range map[string]string{goldenST: "weights.pth", varPTH: "weights.safetensors"} {
		p := filepath.Join(dir, dst)
		if err := os.WriteFile(p, readFile(t, src), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{goldenST: "safetensors", varPTH: "pth"}[src]
		if c.Format() != want {
			t.Errorf("%s: format %q, want %q", dst, c.Format(), want)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenReaderAtMatchesOpen(t *testing.T) {
	c1, err := Open(varPTH)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := openBytes(readFile(t, varPTH))
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range c1.Tensors() {
		a, err1 := c1.Float32(info.Name)
		b, err2 := c2.Float32(info.Name)
		if err1 != nil || err2 != nil || !slices.Equal(a, b) {
			t.Fatalf("%s differs: %v %v", info.Name, err1, err2)
		}
	}
}

func TestErrors(t *testing.T) {
	c, err := Open(varPTH)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_, err = c.Float32("no.such.tensor")
	wantKind(t, err, ErrNotFound)
	var e *Error
	errors.As(err, &e)
	if e.File != varPTH || e.Tensor != "no.such.tensor" {
		t.Fatalf("error fields %+v", e)
	}
	if msg := err.Error(); !strings.Contains(msg, "var.pth") || !strings.Contains(msg, "no.such.tensor") {
		t.Fatalf("message %q names neither file nor tensor", msg)
	}
	if _, err := c.Int64("no.such.tensor"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := c.Host("no.such.tensor"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, ok := c.Info("no.such.tensor"); ok {
		t.Fatal("Info found a missing tensor")
	}

	// An I/O error keeps its cause.
	_, err = Open(filepath.Join(t.TempDir(), "missing.pth"))
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &e) {
		t.Fatalf("missing file: %v", err)
	}

	// Both the kind and the cause are visible.
	cause := errors.New("cause")
	err = &Error{Kind: ErrFormat, File: "f", Tensor: "t", Msg: "m", Err: cause}
	if !errors.Is(err, ErrFormat) || !errors.Is(err, cause) || errors.Is(err, ErrUnsafe) {
		t.Fatal("Unwrap does not expose Kind and Err")
	}
	if got := err.Error(); got != `loader: f: tensor "t": malformed checkpoint: m: cause` {
		t.Fatalf("Error() = %q", got)
	}

	for _, b := range [][]byte{nil, []byte("x"), []byte("hello, world, not a checkpoint")} {
		_, err := openBytes(b)
		wantKind(t, err, ErrFormat)
	}
}

// Tensors and Info hand out copies: callers cannot corrupt the checkpoint's shapes.
func TestInfoIsACopy(t *testing.T) {
	c, err := openBytes(readFile(t, varPTH))
	if err != nil {
		t.Fatal(err)
	}
	c.Tensors()[0].Shape[0] = 99
	info, _ := c.Info("pos_start")
	info.Shape[0] = 99
	h, _ := c.Host("pos_start")
	h.Shape[0] = 99
	if info, _ := c.Info("pos_start"); info.Shape[0] != 1 {
		t.Fatalf("shape was modified through a returned slice: %v", info.Shape)
	}
}

// f16Ref evaluates a binary16 bit pattern from its definition, independently of f16ToF32.
func f16Ref(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e, m := int(h>>10&0x1f), float64(h&0x3ff)
	switch e {
	case 0:
		return sign * math.Ldexp(m, -24)
	case 31:
		if m == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+m/1024, e-15)
}

func TestF16Exhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got, want := core.F16ToF32(h), f16Ref(h)
		switch {
		case math.IsNaN(want):
			if !math.IsNaN(float64(got)) {
				t.Fatalf("%#04x: %v, want NaN", h, got)
			}
		case float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want):
			t.Fatalf("%#04x: %v, want %v", h, got, want)
		}
	}
	for h, want := range map[uint16]float32{0x3c00: 1, 0xc000: -2, 0x7bff: 65504, 0x3555: 0.333251953125, 0x0001: 5.9604645e-08} {
		if got := core.F16ToF32(h); got != want {
			t.Errorf("%#04x: %v, want %v", h, got, want)
		}
	}
}

func TestDecodeDTypes(t *testing.T) {
	cases := []struct {
		dt    DType
		raw   []byte
		f32   []float32
		i64   []int64
		isInt bool
	}{
		{F32, f32Bytes(1.5, -2), []float32{1.5, -2}, nil, false},
		{F64, i64Bytes(int64(math.Float64bits(0.1)), int64(math.Float64bits(1e300))), []float32{0.1, float32(math.Inf(1))}, nil, false},
		{F16, u16Bytes(0x3c00, 0xc500, 0x7c00), []float32{1, -5, float32(math.Inf(1))}, nil, false},
		{BF16, u16Bytes(0x3f80, 0xc049, 0xff80, 0x0001), []float32{1, -3.140625, float32(math.Inf(-1)), math.Float32frombits(0x00010000)}, nil, false},
		{I64, i64Bytes(-3, 1<<40), []float32{-3, 1 << 40}, []int64{-3, 1 << 40}, true},
		{I32, []byte{0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0}, []float32{-1, 7}, []int64{-1, 7}, true},
		{I16, u16Bytes(0xfffe, 300), []float32{-2, 300}, []int64{-2, 300}, true},
		{I8, []byte{0xff, 0x7f}, []float32{-1, 127}, []int64{-1, 127}, true},
		{U8, []byte{0xff, 0x7f}, []float32{255, 127}, []int64{255, 127}, true},
		{Bool, []byte{0, 1, 2}, []float32{0, 1, 1}, []int64{0, 1, 1}, true},
	}
	for _, c := range cases {
		n := len(c.raw) / c.dt.itemSize()
		f := make([]float32, n)
		decodeF32(f, c.raw, c.dt)
		if !slices.Equal(f, c.f32) {
			t.Errorf("%s as float32: %v, want %v", c.dt, f, c.f32)
		}
		if c.dt.isInteger() != c.isInt {
			t.Errorf("%s: isInteger %v", c.dt, c.dt.isInteger())
		}
		if c.isInt {
			i := make([]int64, n)
			decodeInts(i, c.raw, c.dt)
			if !slices.Equal(i, c.i64) {
				t.Errorf("%s as int64: %v, want %v", c.dt, i, c.i64)
			}
		}
	}
}
