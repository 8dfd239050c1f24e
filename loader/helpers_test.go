package loader

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	fixtureDir = "../testdata/var-tiny/"
	varPTH     = fixtureDir + "var.pth"
	vaePTH     = fixtureDir + "vae.pth"
	goldenST   = fixtureDir + "golden.safetensors"
	goldenMD   = fixtureDir + "golden.md"
	picklesDir = "testdata/pickles/"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openBytes opens an in-memory checkpoint.
func openBytes(b []byte) (*Checkpoint, error) {
	return OpenReaderAt(bytes.NewReader(b), int64(len(b)), "test")
}

// wantKind fails unless err is a *Error of the given kind.
func wantKind(t testing.TB, err error, kind error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("got %v, want kind %v", err, kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a *loader.Error", err)
	}
}

// pk writes pickles opcode by opcode, the way torch's (CPython's) pickler lays them out.
type pk struct{ b []byte }

func (p *pk) op(ops ...byte) *pk { p.b = append(p.b, ops...); return p }

func (p *pk) proto(v byte) *pk { return p.op(opProto, v) }

func (p *pk) str(s string) *pk {
	p.op(opBinUnicode)
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
	return p
}

func (p *pk) int(v int64) *pk {
	switch {
	case v >= 0 && v < 256:
		return p.op(opBinInt1, byte(v))
	case v >= 0 && v < 65536:
		p.op(opBinInt2)
		p.b = binary.LittleEndian.AppendUint16(p.b, uint16(v))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		p.op(opBinInt)
		p.b = binary.LittleEndian.AppendUint32(p.b, uint32(int32(v)))
	default:
		p.op(opLong1, 8)
		p.b = binary.LittleEndian.AppendUint64(p.b, uint64(v))
	}
	return p
}

func (p *pk) global(module, name string) *pk {
	p.op(opGlobal)
	p.b = append(p.b, module+"\n"+name+"\n"...)
	return p
}

func (p *pk) ints(vs []int64) *pk {
	p.op(opMark)
	for _, v := range vs {
		p.int(v)
	}
	return p.op(opTuple)
}

// tspec describes one tensor of a synthetic state_dict.
type tspec struct {
	name, class, key string
	numel, offset    int64
	shape, stride    []int64
}

// tensor emits _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict()).
func (p *pk) tensor(s tspec) *pk {
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.op(opMark, opMark).str("storage").global("torch", s.class).str(s.key).str("cpu").int(s.numel).op(opTuple, opBinPersID)
	p.int(s.offset).ints(s.shape).ints(s.stride).op(opNewFalse)
	p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
	return p.op(opTuple, opReduce)
}

// statePickle is a protocol-2 pickle of OrderedDict(name -> tensor) with torch's _metadata BUILD at the end.
func statePickle(specs ...tspec) []byte {
	p := &pk{}
	p.proto(2).global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
	p.op(opMark)
	for _, s := range specs {
		p.str(s.name).tensor(s)
	}
	p.op(opSetItems)
	p.op(opEmptyDict).str("_metadata").global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opSetItem, opBuild)
	return p.op(opStop).b
}

type zent struct {
	name   string
	data   []byte
	method uint16
}

func buildZip(t testing.TB, entries ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		var w io.Writer
		var err error
		if e.method == zip.Store || e.method == zip.Deflate {
			w, err = zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		} else {
			// No compressor is registered for other methods: write the bytes as if they were compressed.
			w, err = zw.CreateRaw(&zip.FileHeader{Name: e.name, Method: e.method, CRC32: crc32.ChecksumIEEE(e.data),
				CompressedSize64: uint64(len(e.data)), UncompressedSize64: uint64(len(e.data))})
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildPTH lays out a torch.save archive: root/data.pkl, root/data/<key> for each storage, root/version.
func buildPTH(t testing.TB, root string, pkl []byte, storages map[string][]byte, method uint16) []byte {
	t.Helper()
	ents := []zent{{root + "/data.pkl", pkl, method}}
	for _, k := range sortedKeys(storages) {
		ents = append(ents, zent{root + "/data/" + k, storages[k], method})
	}
	ents = append(ents, zent{root + "/version", []byte("3\n"), method})
	return buildZip(t, ents...)
}

func sortedKeys(m map[string][]byte) []string { return slices.Sorted(maps.Keys(m)) }

func f32Bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func i64Bytes(vs ...int64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func u16Bytes(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

func iota32(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)
	}
	return v
}

// buildST writes a safetensors file from a raw header (so tests can make it as wrong as they like).
func buildST(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// stHeader marshals a well-formed header from name -> entry.
func stHeader(t testing.TB, entries map[string]any) string {
	t.Helper()
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goldenEntry is a row of one of golden.md's tables.
type goldenEntry struct {
	name  string
	dtype DType
	shape []int
}

// readGolden parses the table under the heading that starts with section ("## Tensors", "### var.pth", ...).
func readGolden(t testing.TB, section string) []goldenEntry {
	t.Helper()
	f, err := os.Open(goldenMD)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenEntry
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			in = strings.TrimSpace(line) == section
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cols := strings.Split(line, "|")
		name := strings.Trim(strings.TrimSpace(cols[1]), "`")
		var shapeCol, dtypeCol string
		if section == "## Tensors" { // | name | dtype | shape | produced by |
			dtypeCol, shapeCol = cols[2], cols[3]
		} else { // | key | shape | dtype | kind |
			shapeCol, dtypeCol = cols[2], cols[3]
		}
		dt := map[string]DType{"float32": F32, "int64": I64, "F32": F32, "I64": I64}[strings.TrimSpace(dtypeCol)]
		if dt == "" {
			t.Fatalf("golden.md: unknown dtype in %q", line)
		}
		shape := []int{}
		for _, s := range strings.Split(strings.Trim(strings.TrimSpace(shapeCol), "[]"), ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("golden.md: bad shape in %q", line)
			}
			shape = append(shape, n)
		}
		out = append(out, goldenEntry{name, dt, shape})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("golden.md: no table under %q", section)
	}
	return out
}
