package loader

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSafetensorsRoundTrip(t *testing.T) {
	data := append(append(append(f32Bytes(1, 2, 3, 4, 5, 6), u16Bytes(0x3c00, 0xc000)...), i64Bytes(-9)...), u16Bytes(0x3f80)...)
	// Header order differs from data order on purpose.
	header := stHeader(t, map[string]any{
		"z.first":      map[string]any{"dtype": "F32", "shape": []int{2, 3}, "data_offsets": []int{0, 24}},
		"a.half":       map[string]any{"dtype": "F16", "shape": []int{2}, "data_offsets": []int{24, 28}},
		"m.scalar":     map[string]any{"dtype": "I64", "shape": []int{}, "data_offsets": []int{28, 36}},
		"b.bf16":       map[string]any{"dtype": "BF16", "shape": []int{1, 1}, "data_offsets": []int{36, 38}},
		"empty":        map[string]any{"dtype": "F32", "shape": []int{0, 4}, "data_offsets": []int{38, 38}},
		"__metadata__": map[string]string{"format": "pt"},
	})
	c, err := openBytes(buildST(header+"   ", data)) // writers pad the header with spaces
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, info := range c.Tensors() {
		names = append(names, info.Name)
	}
	if !slices.Equal(names, []string{"z.first", "a.half", "m.scalar", "b.bf16", "empty"}) {
		t.Fatalf("order %v", names)
	}
	if md := c.Metadata(); md["format"] != "pt" || len(md) != 1 {
		t.Fatalf("metadata %v", md)
	}
	h, _ := c.Host("z.first")
	half, _ := c.Float32("a.half")
	sc, _ := c.Int64("m.scalar")
	bf, _ := c.Host("b.bf16")
	empty, err := c.Float32("empty")
	if !h.Shape.Equal([]int{2, 3}) || !slices.Equal(h.Data, []float32{1, 2, 3, 4, 5, 6}) ||
		!slices.Equal(half, []float32{1, -2}) || !slices.Equal(sc, []int64{-9}) ||
		!bf.Shape.Equal([]int{1, 1}) || !slices.Equal(bf.Data, []float32{1}) || err != nil || len(empty) != 0 {
		t.Fatalf("values: %v %v %v %v %v %v", h, half, sc, bf, empty, err)
	}
}

func TestSafetensorsMalformed(t *testing.T) {
	data := f32Bytes(1, 2, 3, 4)
	entry := func(dtype string, shape, offsets any) string {
		return stHeader(t, map[string]any{"x": map[string]any{"dtype": dtype, "shape": shape, "data_offsets": offsets}})
	}
	cases := map[string]struct {
		kind error
		file []byte
	}{
		"short length":       {ErrFormat, []byte{1, 0, 0}},
		"length past end":    {ErrFormat, append(binary.LittleEndian.AppendUint64(nil, 1000), "{}"...)},
		"length 2^63":        {ErrFormat, append(binary.LittleEndian.AppendUint64(nil, 1<<63), "{}"...)},
		"length 2^64-1":      {ErrFormat, append(binary.LittleEndian.AppendUint64(nil, ^uint64(0)), "{}"...)},
		"not json":           {ErrFormat, buildST("{nope", data)},
		"json array":         {ErrFormat, buildST(`{"x": [1]}`, data)},
		"header array":       {ErrFormat, buildST("[{}]", data)},
		"trailing data":      {ErrFormat, buildST(`{} {}`, data)},
		"unclosed":           {ErrFormat, buildST(`{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}`, data)},
		"duplicate name":     {ErrFormat, buildST(`{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}`, data)},
		"missing offsets":    {ErrFormat, buildST(`{"x": {"dtype": "F32", "shape": [4]}}`, data)},
		"missing dtype":      {ErrFormat, buildST(`{"x": {"shape": [4], "data_offsets": [0, 16]}}`, data)},
		"unknown dtype":      {ErrUnsupported, buildST(entry("F8_E4M3", []int{4}, []int{0, 4}), data)},
		"begin > end":        {ErrFormat, buildST(entry("F32", []int{1}, []int{8, 4}), data)},
		"end past data":      {ErrFormat, buildST(entry("F32", []int{5}, []int{0, 20}), data)},
		"end 2^64-1":         {ErrFormat, buildST(`{"x": {"dtype": "F32", "shape": [1], "data_offsets": [18446744073709551612, 18446744073709551615]}}`, data)},
		"offset > 2^64":      {ErrFormat, buildST(`{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 18446744073709551620]}}`, data)},
		"size mismatch":      {ErrFormat, buildST(entry("F32", []int{3}, []int{0, 16}), data)},
		"wrong offset count": {ErrFormat, buildST(entry("F32", []int{4}, []int{0, 8, 16}), data)},
		"negative dim":       {ErrFormat, buildST(entry("F32", []int{-4}, []int{0, 16}), data)},
		"float dim":          {ErrFormat, buildST(`{"x": {"dtype": "F32", "shape": [4.5], "data_offsets": [0, 16]}}`, data)},
		"dims overflow":      {ErrFormat, buildST(entry("F32", []uint64{1 << 32, 1 << 32}, []int{0, 16}), data)},
		"dims wrap to size":  {ErrFormat, buildST(entry("F32", []uint64{1 << 62, 4, 1}, []int{0, 16}), data)},
		"huge dim":           {ErrFormat, buildST(entry("U8", []uint64{1 << 63}, []int{0, 16}), data)},
		"too many dims":      {ErrUnsupported, buildST(entry("F32", make([]int, 65), []int{0, 0}), data)},
		"overlap": {ErrFormat, buildST(`{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
			"y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}`, data)},
		"bad metadata": {ErrFormat, buildST(`{"__metadata__": {"a": 1}}`, data)},
	}
	for name, tc := range cases {
		_, err := openBytes(tc.file)
		if !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v, want %v", name, err, tc.kind)
		}
	}
	// The offending tensor is named.
	_, err := openBytes(buildST(entry("F32", []int{3}, []int{0, 16}), data))
	var e *Error
	if !errors.As(err, &e) || e.Tensor != "x" {
		t.Errorf("error does not name the tensor: %v", err)
	}
}

// sparseFile pretends to be a large file of zeros after a short prefix, without the memory.
type sparseFile struct {
	prefix []byte
	size   int64
}

func (s sparseFile) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		p[i] = 0
		if o := off + int64(i); o < int64(len(s.prefix)) {
			p[i] = s.prefix[o]
		}
	}
	return len(p), nil
}

// A header length within a (large) file but above the 100 MB cap is refused before anything is allocated.
func TestSafetensorsHeaderCap(t *testing.T) {
	prefix := append(binary.LittleEndian.AppendUint64(nil, 150<<20), '{')
	_, err := OpenReaderAt(sparseFile{prefix, 1 << 40}, 1<<40, "sparse")
	wantKind(t, err, ErrUnsupported)
	if !strings.Contains(err.Error(), "header") {
		t.Errorf("message %q", err)
	}
}

// Every prefix and every single-byte flip of a small safetensors file fails cleanly or reads.
func TestSafetensorsCorruption(t *testing.T) {
	header := stHeader(t, map[string]any{
		"a": map[string]any{"dtype": "F32", "shape": []int{2}, "data_offsets": []int{0, 8}},
		"b": map[string]any{"dtype": "I64", "shape": []int{1}, "data_offsets": []int{8, 16}},
	})
	file := buildST(header, append(f32Bytes(1, 2), i64Bytes(3)...))
	for n := range len(file) {
		if _, err := openBytes(file[:n]); !errors.Is(err, ErrFormat) {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
	for i := range file {
		for _, x := range []byte{0x01, 0x20, 0x80} {
			bad := slices.Clone(file)
			bad[i] ^= x
			readAll(t, bad)
		}
	}
}

// The fuzz seed cut from golden.safetensors is itself a valid file with the original values.
func TestGoldenExcerpt(t *testing.T) {
	c, err := openBytes(goldenExcerpt(t, "op.silu.in", "vae.idx.s0"))
	if err != nil {
		t.Fatal(err)
	}
	full, err := Open(goldenST)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	a, _ := c.Float32("op.silu.in")
	b, _ := full.Float32("op.silu.in")
	x, _ := c.Int64("vae.idx.s0")
	y, _ := full.Int64("vae.idx.s0")
	if len(a) != 101 || !slices.Equal(a, b) || !slices.Equal(x, y) || c.Metadata()["fixture"] != "var-tiny" {
		t.Fatalf("excerpt differs: %v %v", x, y)
	}
}
