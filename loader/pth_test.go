package loader

import (
	"archive/zip"
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// strided builds an archive with one float storage 0..n-1 (key "0") and the given views of it.
func strided(t *testing.T, n int, specs ...tspec) *Checkpoint {
	t.Helper()
	for i := range specs {
		specs[i].class, specs[i].key, specs[i].numel = "FloatStorage", "0", int64(n)
	}
	c, err := openBytes(buildPTH(t, "archive", statePickle(specs...), map[string][]byte{"0": f32Bytes(iota32(n)...)}, zip.Store))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStridedViews(t *testing.T) {
	c := strided(t, 24,
		tspec{name: "dense", shape: []int64{2, 3, 4}, stride: []int64{12, 4, 1}},
		tspec{name: "transposed", shape: []int64{4, 3}, stride: []int64{1, 4}},
		tspec{name: "offset_step", offset: 2, shape: []int64{2, 3}, stride: []int64{8, 2}},
		tspec{name: "broadcast", offset: 5, shape: []int64{2, 3}, stride: []int64{0, 1}},
		tspec{name: "scalar", offset: 7, shape: []int64{}, stride: []int64{}},
		tspec{name: "empty", offset: 24, shape: []int64{0, 5}, stride: []int64{5, 1}},
		tspec{name: "unit_dims", offset: 3, shape: []int64{1, 2, 1}, stride: []int64{999, 1, 12345}},
		tspec{name: "permuted3d", shape: []int64{4, 2, 3}, stride: []int64{1, 12, 4}},
		tspec{name: "slice_cols", offset: 1, shape: []int64{3, 2}, stride: []int64{4, 1}},
	)
	want := map[string][]float32{
		"dense":       iota32(24),
		"transposed":  {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11},
		"offset_step": {2, 4, 6, 10, 12, 14},
		"broadcast":   {5, 6, 7, 5, 6, 7},
		"scalar":      {7},
		"empty":       {},
		"unit_dims":   {3, 4},
		"slice_cols":  {1, 2, 5, 6, 9, 10},
	}
	// permuted3d[i][j][k] = storage[i + 12j + 4k], computed the slow way.
	for i := range 4 {
		for j := range 2 {
			for k := range 3 {
				want["permuted3d"] = append(want["permuted3d"], float32(i+12*j+4*k))
			}
		}
	}
	for name, w := range want {
		got, err := c.Float32(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
	}
	if info, _ := c.Info("scalar"); info.Shape == nil || len(info.Shape) != 0 {
		t.Errorf("scalar shape %#v, want empty", info.Shape)
	}
	for name, contiguous := range map[string]bool{"dense": true, "transposed": false, "unit_dims": true, "scalar": true, "broadcast": false} {
		if got := c.byName[name].contiguous; got != contiguous {
			t.Errorf("%s: contiguous %v, want %v", name, got, contiguous)
		}
	}
}

// Every dtype torch stores, through both readers; F16 and BF16 are converted exactly.
func TestStorageDTypes(t *testing.T) {
	type st struct {
		class string
		raw   []byte
		f32   []float32
		i64   []int64
	}
	storages := map[string]st{
		"f32":  {"FloatStorage", f32Bytes(1.25, -3), []float32{1.25, -3}, nil},
		"f64":  {"DoubleStorage", i64Bytes(int64(math.Float64bits(-0.5)), int64(math.Float64bits(3))), []float32{-0.5, 3}, nil},
		"f16":  {"HalfStorage", u16Bytes(0x3c00, 0xbc00, 0x0001, 0x7bff, 0xfc00), []float32{1, -1, 5.9604645e-08, 65504, float32(math.Inf(-1))}, nil},
		"bf16": {"BFloat16Storage", u16Bytes(0x3f80, 0x4049, 0x0080), []float32{1, 3.140625, math.Float32frombits(0x00800000)}, nil},
		"i64":  {"LongStorage", i64Bytes(-7, 1<<33), []float32{-7, 1 << 33}, []int64{-7, 1 << 33}},
		"i32":  {"IntStorage", []byte{0xfe, 0xff, 0xff, 0xff}, []float32{-2}, []int64{-2}},
		"i16":  {"ShortStorage", u16Bytes(0x8000), []float32{-32768}, []int64{-32768}},
		"i8":   {"CharStorage", []byte{0x80, 5}, []float32{-128, 5}, []int64{-128, 5}},
		"u8":   {"ByteStorage", []byte{0x80, 5}, []float32{128, 5}, []int64{128, 5}},
		"bool": {"BoolStorage", []byte{1, 0, 1}, []float32{1, 0, 1}, []int64{1, 0, 1}},
	}
	var specs []tspec
	data := map[string][]byte{}
	for name, s := range storages {
		n := int64(len(s.f32))
		specs = append(specs, tspec{name: name, class: s.class, key: name, numel: n, shape: []int64{n}, stride: []int64{1}})
		data[name] = s.raw
	}
	for _, method := range []uint16{zip.Store, zip.Deflate} {
		c, err := openBytes(buildPTH(t, "dtypes", statePickle(specs...), data, method))
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range storages {
			got, err := c.Float32(name)
			if err != nil || !slices.Equal(got, s.f32) {
				t.Errorf("method %d, %s: %v %v, want %v", method, name, got, err, s.f32)
			}
			gi, err := c.Int64(name)
			if s.i64 == nil {
				if !errors.Is(err, ErrUnsupported) {
					t.Errorf("%s: Int64 of a float tensor: %v", name, err)
				}
			} else if err != nil || !slices.Equal(gi, s.i64) {
				t.Errorf("method %d, %s: %v %v, want %v", method, name, gi, err, s.i64)
			}
		}
	}
}

// Views that touch a few elements of a large storage are read element by element, not as one huge span.
func TestSparseViews(t *testing.T) {
	const n = 3 << 20 // 12 MB of float32, more than chunkBytes
	specs := []tspec{
		{name: "every_millionth", shape: []int64{3}, stride: []int64{1 << 20}, offset: 5},
		{name: "rows", shape: []int64{2, 4}, stride: []int64{1 << 21, 1}, offset: 7},
		{name: "corner", shape: []int64{2, 2}, stride: []int64{1, n - 2}},
	}
	want := map[string][]float32{
		"every_millionth": {5, 5 + 1<<20, 5 + 2<<20},
		"rows":            {7, 8, 9, 10, 7 + 1<<21, 8 + 1<<21, 9 + 1<<21, 10 + 1<<21},
		"corner":          {0, n - 2, 1, n - 1},
	}
	for i := range specs {
		specs[i].class, specs[i].key, specs[i].numel = "FloatStorage", "0", n
	}
	for _, method := range []uint16{zip.Store, zip.Deflate} {
		c, err := openBytes(buildPTH(t, "archive", statePickle(specs...), map[string][]byte{"0": f32Bytes(iota32(n)...)}, method))
		if err != nil {
			t.Fatal(err)
		}
		for name, w := range want {
			if got, err := c.Float32(name); err != nil || !slices.Equal(got, w) {
				t.Errorf("method %d, %s = %v %v, want %v", method, name, got, err, w)
			}
		}
	}
}

// A deflated archive (torch never writes one, but it is a valid zip) reads the same, strided views included.
func TestDeflatedArchive(t *testing.T) {
	specs := []tspec{
		{name: "a", class: "FloatStorage", key: "0", numel: 12, shape: []int64{3, 4}, stride: []int64{4, 1}},
		{name: "a_t", class: "FloatStorage", key: "0", numel: 12, shape: []int64{4, 3}, stride: []int64{1, 4}},
	}
	c, err := openBytes(buildPTH(t, "z", statePickle(specs...), map[string][]byte{"0": f32Bytes(iota32(12)...)}, zip.Deflate))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Float32("a")
	at, _ := c.Float32("a_t")
	if !slices.Equal(a, iota32(12)) || !slices.Equal(at, []float32{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}) {
		t.Fatalf("a %v, a_t %v", a, at)
	}
}

func TestStorageValidation(t *testing.T) {
	good := tspec{name: "w", class: "FloatStorage", key: "0", numel: 12, shape: []int64{3, 4}, stride: []int64{4, 1}}
	cases := map[string]struct {
		specs []tspec
		data  map[string][]byte
	}{
		"entry too short":  {[]tspec{good}, map[string][]byte{"0": f32Bytes(iota32(11)...)}},
		"entry too long":   {[]tspec{good}, map[string][]byte{"0": f32Bytes(iota32(13)...)}},
		"entry missing":    {[]tspec{good}, map[string][]byte{"1": f32Bytes(iota32(12)...)}},
		"stride past end":  {[]tspec{{name: "w", class: "FloatStorage", key: "0", numel: 12, shape: []int64{3, 4}, stride: []int64{5, 1}}}, map[string][]byte{"0": f32Bytes(iota32(12)...)}},
		"offset past end":  {[]tspec{{name: "w", class: "FloatStorage", key: "0", numel: 12, offset: 9, shape: []int64{4}, stride: []int64{1}}}, map[string][]byte{"0": f32Bytes(iota32(12)...)}},
		"dtype mismatch":   {[]tspec{good, {name: "v", class: "IntStorage", key: "0", numel: 12, shape: []int64{12}, stride: []int64{1}}}, map[string][]byte{"0": f32Bytes(iota32(12)...)}},
		"numel mismatch":   {[]tspec{good, {name: "v", class: "FloatStorage", key: "0", numel: 6, shape: []int64{6}, stride: []int64{1}}}, map[string][]byte{"0": f32Bytes(iota32(12)...)}},
		"wrong item size":  {[]tspec{{name: "w", class: "DoubleStorage", key: "0", numel: 12, shape: []int64{12}, stride: []int64{1}}}, map[string][]byte{"0": f32Bytes(iota32(12)...)}},
		"storage key path": {[]tspec{{name: "w", class: "FloatStorage", key: "../data.pkl", numel: 1, shape: []int64{}, stride: []int64{}}}, nil},
	}
	for name, tc := range cases {
		for _, method := range []uint16{zip.Store, zip.Deflate} {
			_, err := openBytes(buildPTH(t, "archive", statePickle(tc.specs...), tc.data, method))
			if !errors.Is(err, ErrFormat) {
				t.Errorf("%s (method %d): %v, want ErrFormat", name, method, err)
			}
		}
	}
	// The error names the tensor.
	_, err := openBytes(buildPTH(t, "archive", statePickle(good), map[string][]byte{"0": f32Bytes(1)}, zip.Store))
	var e *Error
	if !errors.As(err, &e) || e.Tensor != "w" || !strings.Contains(err.Error(), `"w"`) {
		t.Errorf("error does not name the tensor: %v", err)
	}
	// An empty storage needs no entry.
	empty := tspec{name: "e", class: "FloatStorage", key: "9", numel: 0, shape: []int64{0}, stride: []int64{1}}
	c, err := openBytes(buildPTH(t, "archive", statePickle(empty), nil, zip.Store))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Float32("e"); err != nil || len(v) != 0 {
		t.Fatalf("empty tensor: %v %v", v, err)
	}
}

// A zero-stride view may repeat a storage element, but not into more elements than the file has bytes.
func TestBroadcastBound(t *testing.T) {
	huge := tspec{name: "b", class: "FloatStorage", key: "0", numel: 1, shape: []int64{1 << 20, 1 << 20}, stride: []int64{0, 0}}
	_, err := openBytes(buildPTH(t, "archive", statePickle(huge), map[string][]byte{"0": f32Bytes(1)}, zip.Store))
	wantKind(t, err, ErrUnsupported)
}

func TestArchiveLayout(t *testing.T) {
	spec := tspec{name: "w", class: "FloatStorage", key: "0", numel: 2, shape: []int64{2}, stride: []int64{1}}
	pkl := statePickle(spec)
	data := f32Bytes(1, 2)
	open := func(ents ...zent) error {
		_, err := openBytes(buildZip(t, ents...))
		return err
	}
	// Any root name works.
	for _, root := range []string{"archive", "var", "my model-v2.0"} {
		if err := open(zent{root + "/data.pkl", pkl, 0}, zent{root + "/data/0", data, 0}, zent{root + "/byteorder", []byte("little"), 0}); err != nil {
			t.Errorf("root %q: %v", root, err)
		}
	}
	cases := map[string]struct {
		kind error
		ents []zent
	}{
		"no data.pkl":    {ErrFormat, []zent{{"archive/other.pkl", pkl, 0}, {"archive/data/0", data, 0}}},
		"top data.pkl":   {ErrFormat, []zent{{"data.pkl", pkl, 0}, {"data/0", data, 0}}},
		"two roots":      {ErrFormat, []zent{{"a/data.pkl", pkl, 0}, {"b/data.pkl", pkl, 0}, {"a/data/0", data, 0}}},
		"duplicate":      {ErrFormat, []zent{{"a/data.pkl", pkl, 0}, {"a/data/0", data, 0}, {"a/data/0", data, 0}}},
		"big endian":     {ErrUnsupported, []zent{{"a/data.pkl", pkl, 0}, {"a/data/0", data, 0}, {"a/byteorder", []byte("big"), 0}}},
		"torchscript":    {ErrUnsupported, []zent{{"a/data.pkl", pkl, 0}, {"a/constants.pkl", pkl, 0}, {"a/data/0", data, 0}}},
		"empty zip":      {ErrFormat, nil},
		"bzip2 pkl":      {ErrUnsupported, []zent{{"a/data.pkl", pkl, 12}, {"a/data/0", data, 0}}},
		"bzip2 storage":  {ErrUnsupported, []zent{{"a/data.pkl", pkl, 0}, {"a/data/0", data, 12}}},
		"unsafe pickle":  {ErrUnsafe, []zent{{"a/data.pkl", (&pk{}).proto(2).global("os", "system").str("ls").op(opTuple1, opReduce, opStop).b, 0}}},
		"garbage pickle": {ErrFormat, []zent{{"a/data.pkl", []byte("not a pickle"), 0}}},
	}
	for name, tc := range cases {
		if err := open(tc.ents...); !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v, want %v", name, err, tc.kind)
		}
	}
}

// Only a plain state_dict is accepted; non-tensor values in it are skipped.
func TestStateDictShape(t *testing.T) {
	spec := tspec{name: "w", class: "FloatStorage", key: "0", numel: 2, shape: []int64{2}, stride: []int64{1}}
	data := map[string][]byte{"0": f32Bytes(1, 2)}
	open := func(p *pk) (*Checkpoint, error) {
		return openBytes(buildPTH(t, "archive", p.op(opStop).b, data, zip.Store))
	}

	// {"epoch": 3, "w": tensor, "name": "x"}: the tensor is found, the rest ignored.
	p := (&pk{}).proto(2).op(opEmptyDict, opMark).str("epoch").int(3).str(spec.name).tensor(spec).str("name").str("x").op(opSetItems)
	c, err := open(p)
	if err != nil {
		t.Fatal(err)
	}
	if ts := c.Tensors(); len(ts) != 1 || ts[0].Name != "w" {
		t.Fatalf("tensors %v", ts)
	}

	// Training checkpoints with the weights one or two levels down under the official releases' names
	// are read; the EMA weights win over the raw ones.
	for _, tc := range []struct {
		p    *pk
		want string
	}{
		{(&pk{}).proto(2).op(opEmptyDict, opMark).str("model").op(opEmptyDict).str("m").tensor(spec).op(opSetItem).
			str("optimizer").op(opEmptyDict).str("epoch").int(3).op(opSetItems), "m"},
		{(&pk{}).proto(2).op(opEmptyDict, opMark).str("model").op(opEmptyDict).str("m").tensor(spec).op(opSetItem).
			str("model_ema").op(opEmptyDict).str("ema").tensor(spec).op(opSetItem).op(opSetItems), "ema"},
		{(&pk{}).proto(2).op(opEmptyDict, opMark).str("epoch").int(1).str("trainer").op(opEmptyDict).
			str("var_wo_ddp").op(opEmptyDict).str("v").tensor(spec).op(opSetItem).op(opSetItem).op(opSetItems), "v"},
	} {
		c, err := open(tc.p)
		if err != nil {
			t.Fatal(err)
		}
		if ts := c.Tensors(); len(ts) != 1 || ts[0].Name != tc.want {
			t.Fatalf("tensors %v, want %s", ts, tc.want)
		}
	}

	// Weights under a name no release uses: refused, naming the keys.
	p = (&pk{}).proto(2).op(opEmptyDict, opMark).str("net").op(opEmptyDict).str(spec.name).tensor(spec).op(opSetItem)
	p.str("optimizer").op(opEmptyDict).str("epoch").int(3).op(opSetItems)
	_, err = open(p)
	wantKind(t, err, ErrUnsupported)
	for _, k := range []string{"net", "optimizer", "epoch"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("%q does not list key %q", err, k)
		}
	}

	// Not a dict at all.
	for name, p := range map[string]*pk{
		"list":   (&pk{}).proto(2).op(opEmptyList),
		"tensor": (&pk{}).proto(2).tensor(spec),
		"int":    (&pk{}).proto(2).int(5),
	} {
		if _, err := open(p); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v", name, err)
		}
	}

	// A tensor under a non-str key.
	p = (&pk{}).proto(2).op(opEmptyDict).int(1).tensor(spec).op(opSetItem)
	if _, err := open(p); !errors.Is(err, ErrUnsupported) {
		t.Errorf("int key: %v", err)
	}

	// An empty state_dict is valid and has no tensors.
	c, err = open((&pk{}).proto(2).op(opEmptyDict))
	if err != nil || len(c.Tensors()) != 0 {
		t.Fatalf("empty state_dict: %v %v", c, err)
	}
}

func TestLegacyFormat(t *testing.T) {
	legacy := append(append([]byte(nil), legacyMagic...), '.', 0x80, 0x02, '}', '.')
	_, err := openBytes(legacy)
	wantKind(t, err, ErrUnsupported)
	if !strings.Contains(err.Error(), "legacy torch format") {
		t.Errorf("message %q", err)
	}
	// Any other bare pickle is not a torch.save file either.
	_, err = openBytes([]byte{0x80, 0x02, '}', '.'})
	wantKind(t, err, ErrUnsupported)
}

// Cutting the fixture anywhere loses the zip directory, which is at the end; every cut is a format error.
func TestTruncatedPTH(t *testing.T) {
	full := readFile(t, varPTH)
	zr, err := zip.NewReader(bytes.NewReader(full), int64(len(full)))
	if err != nil {
		t.Fatal(err)
	}
	pklOff, _ := zr.File[0].DataOffset()
	stOff, _ := zr.File[5].DataOffset()
	cuts := map[string]int{
		"empty":             0,
		"in local header":   10,
		"in data.pkl":       int(pklOff) + 100,
		"in a storage":      int(stOff) + 7,
		"before directory":  len(full) - 3000,
		"in directory":      len(full) - 100,
		"in end of central": len(full) - 5,
		"last byte":         len(full) - 1,
	}
	for name, n := range cuts {
		_, err := openBytes(full[:n])
		if !errors.Is(err, ErrFormat) {
			t.Errorf("cut %s (%d bytes): %v", name, n, err)
		}
	}
}

// Corruption inside the file is caught by the zip CRC-32s: data.pkl's when opening, a storage's when the
// tensor is read.
func TestCorruptedPTH(t *testing.T) {
	full := readFile(t, varPTH)
	zr, err := zip.NewReader(bytes.NewReader(full), int64(len(full)))
	if err != nil {
		t.Fatal(err)
	}
	var pklOff int64
	var stName string
	var stOff int64
	for _, f := range zr.File {
		off, _ := f.DataOffset()
		switch {
		case strings.HasSuffix(f.Name, "/data.pkl"):
			pklOff = off
		case f.Name == "var/data/1": // pos_1LC
			stName, stOff = f.Name, off
		}
	}
	if stName == "" {
		t.Fatal("var/data/1 not found")
	}

	bad := slices.Clone(full)
	bad[pklOff+300] ^= 0x01
	_, err = openBytes(bad)
	wantKind(t, err, ErrFormat)

	bad = slices.Clone(full)
	bad[stOff+1000] ^= 0x40
	c, err := openBytes(bad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Float32("pos_1LC")
	wantKind(t, err, ErrFormat)
	if !strings.Contains(err.Error(), "CRC") || !strings.Contains(err.Error(), "pos_1LC") {
		t.Errorf("message %q", err)
	}
	if _, err := c.Float32("pos_start"); err != nil {
		t.Errorf("an intact tensor of the same file: %v", err)
	}

	// The same storage deflated: archive/zip's own CRC check reports it.
	specs := []tspec{{name: "w", class: "FloatStorage", key: "0", numel: 64, shape: []int64{64}, stride: []int64{1}}}
	z := buildPTH(t, "a", statePickle(specs...), map[string][]byte{"0": f32Bytes(iota32(64)...)}, zip.Deflate)
	zr, _ = zip.NewReader(bytes.NewReader(z), int64(len(z)))
	for _, f := range zr.File {
		if f.Name == "a/data/0" {
			off, _ := f.DataOffset()
			z[off+int64(f.CompressedSize64)/2] ^= 0xff
		}
	}
	if c, err = openBytes(z); err == nil {
		_, err = c.Float32("w")
	}
	wantKind(t, err, ErrFormat)
}

// A pickle with a valid CRC but a corrupted opcode is reported with the opcode.
func TestCorruptedPickleOpcode(t *testing.T) {
	pkl := fixturePickle(t)
	pkl[2] = 0xfe // the GLOBAL that starts OrderedDict
	_, err := openBytes(buildPTH(t, "var", pkl, nil, zip.Store))
	wantKind(t, err, ErrFormat)
	if !strings.Contains(err.Error(), "0xfe") {
		t.Errorf("message %q does not name the opcode", err)
	}
}

// Flipping any single byte of a small archive gives an error or a readable checkpoint, never a panic.
func TestSingleByteCorruption(t *testing.T) {
	specs := []tspec{
		{name: "a", class: "FloatStorage", key: "0", numel: 6, shape: []int64{2, 3}, stride: []int64{3, 1}},
		{name: "b", class: "HalfStorage", key: "1", numel: 4, offset: 1, shape: []int64{3}, stride: []int64{1}},
	}
	for _, method := range []uint16{zip.Store, zip.Deflate} {
		z := buildPTH(t, "a", statePickle(specs...), map[string][]byte{"0": f32Bytes(iota32(6)...), "1": u16Bytes(1, 2, 3, 4)}, method)
		for i := range z {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				bad := slices.Clone(z)
				bad[i] ^= x
				readAll(t, bad)
			}
		}
	}
}

// readAll opens b and reads every tensor, checking that each failure is a typed *Error.
func readAll(t testing.TB, b []byte) {
	t.Helper()
	c, err := openBytes(b)
	if err != nil {
		checkTyped(t, err)
		return
	}
	for _, info := range c.Tensors() {
		v, err := c.Float32(info.Name)
		if err != nil {
			checkTyped(t, err)
			continue
		}
		n := 1
		for _, d := range info.Shape {
			n *= d
		}
		if len(v) != n {
			t.Fatalf("%s: %d values for shape %v", info.Name, len(v), info.Shape)
		}
		if info.DType.isInteger() {
			if _, err := c.Int64(info.Name); err != nil {
				checkTyped(t, err)
			}
		}
	}
}

func checkTyped(t testing.TB, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !(errors.Is(err, ErrFormat) || errors.Is(err, ErrUnsafe) || errors.Is(err, ErrUnsupported)) {
		t.Fatalf("untyped error %v", err)
	}
}
