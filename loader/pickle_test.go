package loader

import (
	"archive/zip"
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixturePickle returns var.pth's data.pkl, the pickle torch wrote for the official-style checkpoint.
func fixturePickle(t testing.TB) []byte {
	t.Helper()
	zr, err := zip.OpenReader(varPTH)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/data.pkl") {
			b, err := readEntry(f, maxPickleBytes, 1<<40)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("no data.pkl in var.pth")
	return nil
}

func TestUnpickleFixture(t *testing.T) {
	obj, err := unpickle(fixturePickle(t))
	if err != nil {
		t.Fatal(err)
	}
	items, err := stateDict(obj)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 38 || items[0].name != "pos_start" || items[37].name != "head.bias" {
		t.Fatalf("%d items, first %q", len(items), items[0].name)
	}
	ref := items[1].ref // pos_1LC
	if ref.storage.class != "FloatStorage" || ref.storage.location != "cpu" || ref.storage.numel != 3840 ||
		!slices.Equal(ref.shape, []int64{1, 30, 128}) || !slices.Equal(ref.stride, []int64{3840, 128, 1}) {
		t.Fatalf("pos_1LC: %+v %+v", ref, ref.storage)
	}
}

// Every prefix of a real pickle is an error, never a panic or a success.
func TestUnpickleTruncated(t *testing.T) {
	pkl := fixturePickle(t)
	for n := range len(pkl) {
		if _, err := unpickle(pkl[:n]); !errors.Is(err, ErrFormat) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
}

// The pickles under testdata/pickles were written by CPython's own pickler for protocols 2 to 5, with
// fake torch modules (see gen_pickles.py): FRAME, MEMOIZE, STACK_GLOBAL and SHORT_BINUNICODE all appear.
func TestCPythonPickles(t *testing.T) {
	storages := map[string][]byte{
		"0": f32Bytes(0, 1, 2, 3, 4, 5),
		"1": i64Bytes(10, 11, 12, 13),
		"2": u16Bytes(0x3e00), // 1.5 in binary16
	}
	for _, proto := range []string{"2", "3", "4", "5"} {
		pkl := readFile(t, picklesDir+"state_p"+proto+".pkl")
		c, err := openBytes(buildPTH(t, "archive", pkl, storages, zip.Store))
		if err != nil {
			t.Fatalf("protocol %s: %v", proto, err)
		}
		var names []string
		for _, info := range c.Tensors() {
			names = append(names, info.Name)
		}
		if !slices.Equal(names, []string{"w", "w_t", "ids", "half"}) {
			t.Fatalf("protocol %s: tensors %v", proto, names)
		}
		w, _ := c.Float32("w")
		wt, _ := c.Float32("w_t")
		ids, _ := c.Int64("ids")
		half, _ := c.Host("half")
		if !slices.Equal(w, []float32{0, 1, 2, 3, 4, 5}) || !slices.Equal(wt, []float32{0, 3, 1, 4, 2, 5}) ||
			!slices.Equal(ids, []int64{11, 12, 13}) || len(half.Shape) != 0 || !slices.Equal(half.Data, []float32{1.5}) {
			t.Fatalf("protocol %s: w %v, w_t %v, ids %v, half %v", proto, w, wt, ids, half)
		}
	}
}

// A pickle that would run a shell command (CPython's own output for os.system and eval payloads) is
// refused as unsafe, and nothing runs.
func TestMaliciousCPythonPickles(t *testing.T) {
	const marker = "/nonexistent-webvar-loader-test/pwned" // the path the payloads would create
	for _, name := range []string{"evil_system_p2", "evil_system_p4", "evil_eval_p2", "evil_eval_p4"} {
		pkl := readFile(t, picklesDir+name+".pkl")
		_, err := unpickle(pkl)
		wantKind(t, err, ErrUnsafe)
		// Protocol 2 spells builtins as __builtin__ for Python 2.
		want := map[bool]string{true: "posix.system", false: "builtin"}[strings.Contains(name, "system")]
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not name %s", name, err, want)
		}
		_, err = openBytes(buildPTH(t, "evil", pkl, nil, zip.Store))
		wantKind(t, err, ErrUnsafe)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the payload ran")
	}
}

func TestUnsafeGlobals(t *testing.T) {
	marker := t.TempDir() + "/pwned"
	payload := func(module, name string) []byte {
		return (&pk{}).proto(2).global(module, name).str("touch "+marker).op(opTuple1, opReduce, opStop).b
	}
	for _, g := range [][2]string{
		{"os", "system"}, {"posix", "system"}, {"nt", "system"}, {"builtins", "eval"}, {"builtins", "exec"},
		{"__builtin__", "eval"}, {"subprocess", "Popen"}, {"builtins", "getattr"}, {"torch", "load"},
		{"torch._utils", "_rebuild_parameter"}, {"torch.storage", "_load_from_bytes"}, {"collections", "OrderedDict.fromkeys"},
		{"collections", "defaultdict"}, {"torch", "Storage.__init__"},
	} {
		_, err := unpickle(payload(g[0], g[1]))
		wantKind(t, err, ErrUnsafe)
		if !strings.Contains(err.Error(), g[0]) {
			t.Errorf("%q does not name %s", err, g[0])
		}
	}
	// The same through STACK_GLOBAL (protocol 4).
	p := (&pk{}).proto(4)
	p.op(opShortBinUni, 8).b = append(p.b, "builtins"...)
	p.op(opShortBinUni, 4).b = append(p.b, "eval"...)
	_, err := unpickle(p.op(opStackGlobal).str("1+1").op(opTuple1, opReduce, opStop).b)
	wantKind(t, err, ErrUnsafe)
	if !strings.Contains(err.Error(), "builtins.eval") {
		t.Errorf("%q does not name builtins.eval", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the payload ran")
	}
}

// Storage classes of dtypes this package does not convert are unsupported, not unsafe.
func TestUnknownStorageTypes(t *testing.T) {
	for _, name := range []string{"ComplexFloatStorage", "UntypedStorage", "Float8_e4m3fnStorage"} {
		spec := tspec{name: "w", class: name, key: "0", numel: 1, shape: []int64{}, stride: []int64{}}
		_, err := unpickle(statePickle(spec))
		wantKind(t, err, ErrUnsupported)
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%q does not name %s", err, name)
		}
	}
}

func TestUnsafeCalls(t *testing.T) {
	cases := map[string][]byte{
		// REDUCE on an allowed global that is not callable here.
		"reduce storage": (&pk{}).proto(2).global("torch", "FloatStorage").op(opEmptyTuple, opReduce, opStop).b,
		// ... reached through the memo.
		"reduce memo storage": (&pk{}).proto(2).global("torch", "LongStorage").op(opBinPut, 0, opPop, opBinGet, 0).
			int(3).op(opTuple1, opReduce, opStop).b,
		"reduce str":  (&pk{}).proto(2).str("os.system").str("ls").op(opTuple1, opReduce, opStop).b,
		"reduce int":  (&pk{}).proto(2).int(1).op(opEmptyTuple, opReduce, opStop).b,
		"build dict":  (&pk{}).proto(2).op(opEmptyDict, opEmptyDict, opBuild, opStop).b,
		"build list":  (&pk{}).proto(2).op(opEmptyList, opEmptyDict, opBuild, opStop).b,
		"build tuple": (&pk{}).proto(2).op(opEmptyTuple, opEmptyDict, opBuild, opStop).b,
		"INST":        append((&pk{}).proto(2).op(opMark).b, "ios\nsystem\n."...),
		"OBJ":         (&pk{}).proto(2).op(opMark).global("collections", "OrderedDict").op('o', opStop).b,
		"NEWOBJ":      (&pk{}).proto(2).global("collections", "OrderedDict").op(opEmptyTuple, 0x81, opStop).b,
		"NEWOBJ_EX":   (&pk{}).proto(4).global("collections", "OrderedDict").op(opEmptyTuple, opEmptyDict, 0x92, opStop).b,
		"EXT1":        (&pk{}).proto(2).op(0x82, 1, opStop).b,
	}
	for name, pkl := range cases {
		_, err := unpickle(pkl)
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("%s: %v, want ErrUnsafe", name, err)
		}
	}
	_, err := unpickle(cases["NEWOBJ"])
	if !strings.Contains(err.Error(), "NEWOBJ") {
		t.Errorf("%q does not name the opcode", err)
	}
}

func TestUnsupportedOpcodes(t *testing.T) {
	for op, name := range map[byte]string{'2': "DUP", 'I': "INT", 'S': "STRING", 'g': "GET", 0x8f: "EMPTY_SET", 0x96: "BYTEARRAY8"} {
		_, err := unpickle([]byte{opProto, 2, op, '0', '\n', opStop})
		wantKind(t, err, ErrFormat)
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%q does not name %s", err, name)
		}
	}
	for _, op := range []byte{0x00, 0xff, 'A', 0x99} {
		_, err := unpickle([]byte{opProto, 2, op, opStop})
		wantKind(t, err, ErrFormat)
	}
}

func TestMalformedPickles(t *testing.T) {
	cases := map[string][]byte{
		"empty":            nil,
		"no STOP":          {opProto, 2, opNone},
		"STOP on empty":    {opStop},
		"pop empty":        {opPop, opStop},
		"underflow":        {opTuple2, opStop},
		"frame underflow":  {opNone, opMark, opTuple1, opStop}, // Python cannot see below a MARK either
		"no mark":          {opNone, opTuple, opStop},
		"bad memo":         {opBinGet, 7, opStop},
		"put on empty":     {opBinPut, 0, opStop},
		"long string":      {opBinUnicode, 0xff, 0xff, 0xff, 0x7f, 'a', opStop},
		"huge unicode8":    {opBinUnicode8, 0, 0, 0, 0, 0, 0, 0, 0x80, opStop},
		"negative string":  {opBinString, 0xff, 0xff, 0xff, 0xff, opStop},
		"negative LONG4":   {opLong4, 0xff, 0xff, 0xff, 0xff, opStop},
		"huge LONG4":       {opLong4, 0xff, 0xff, 0xff, 0x7f, 0, opStop},
		"huge frame":       {opProto, 4, opFrame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, opNone, opStop},
		"global no nl":     {opGlobal, 'o', 's'},
		"odd dict":         {opMark, opNone, opDict, opStop},
		"append to int":    {opBinInt1, 1, opNone, opAppend, opStop},
		"setitem on list":  {opEmptyList, opNone, opNone, opSetItem, opStop},
		"reduce args":      append((&pk{}).global("collections", "OrderedDict").b, opNone, opReduce, opStop),
		"stack_global int": {opBinInt1, 1, opBinInt1, 2, opStackGlobal, opStop},
		"persid not tuple": {opNone, opBinPersID, opStop},
	}
	for name, pkl := range cases {
		if _, err := unpickle(pkl); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
	if _, err := unpickle([]byte{opProto, 6, opNone, opStop}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("protocol 6: %v", err)
	}
	// A list as a dict key would need hashing containers.
	if _, err := unpickle([]byte{opEmptyDict, opEmptyList, opNone, opSetItem, opStop}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("list key: %v", err)
	}
}

func TestPickleValues(t *testing.T) {
	p := (&pk{}).proto(2).op(opMark)
	p.int(-5).int(200).int(40000).int(-1 << 40)
	p.op(opNone, opNewTrue, opNewFalse, opBinFloat, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0) // 1.5, big-endian
	p.op(opShortBinBytes, 2, 'h', 'i', opShortBinString, 1, 'x')
	p.op(opLong1, 0).op(opLong1, 2, 0xff, 0x00).op(opLong1, 1, 0x80)
	p.op(opLong1, 9, 0, 0, 0, 0, 0, 0, 0, 0x80, 0xff)                         // -2^63, sign-extended to 9 bytes
	p.op(opLong1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1)                               // 2^64: too big
	p.op(opLong4, 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f) // 2^63-1
	v, err := unpickle(p.op(opList, opStop).b)
	if err != nil {
		t.Fatal(err)
	}
	got := v.(*pyList).items
	want := []any{int64(-5), int64(200), int64(40000), int64(-1 << 40), nil, true, false, 1.5, []byte("hi"), "x",
		int64(0), int64(255), int64(-128), int64(-1 << 63), pyBigInt{}, int64(1<<63 - 1)}
	if len(got) != len(want) {
		t.Fatalf("%d values: %#v", len(got), got)
	}
	for i := range want {
		if b, ok := want[i].([]byte); ok {
			if g, _ := got[i].([]byte); string(g) != string(b) {
				t.Errorf("value %d: %#v, want %#v", i, got[i], want[i])
			}
		} else if got[i] != want[i] {
			t.Errorf("value %d: %#v, want %#v", i, got[i], want[i])
		}
	}
}

// Dicts behave like Python's: later keys replace earlier ones in place; OrderedDict(pairs) works; the memo
// shares objects, so a list appended to after BINPUT is seen through BINGET.
func TestPickleSemantics(t *testing.T) {
	p := (&pk{}).proto(2).op(opEmptyDict).op(opMark).str("a").int(1).str("b").int(2).str("a").int(3).op(opSetItems, opStop)
	v, err := unpickle(p.b)
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*pyDict)
	if !slices.Equal(d.keys, []any{"a", "b"}) || !slices.Equal(d.vals, []any{int64(3), int64(2)}) {
		t.Fatalf("dict %v %v", d.keys, d.vals)
	}

	p = (&pk{}).proto(2).global("collections", "OrderedDict").op(opMark)
	p.str("k1").int(1).op(opTuple2).str("k2").int(2).op(opTuple2)
	v, err = unpickle(p.op(opList, opTuple1, opReduce, opStop).b)
	if err != nil {
		t.Fatal(err)
	}
	if d := v.(*pyDict); !d.ordered || !slices.Equal(d.keys, []any{"k1", "k2"}) {
		t.Fatalf("OrderedDict(pairs) = %v", d.keys)
	}

	p = (&pk{}).proto(2).op(opEmptyList, opBinPut, 1, opMark, opBinGet, 1, opNone, opAppend, opTuple, opStop)
	v, err = unpickle(p.b)
	if err != nil {
		t.Fatal(err)
	}
	if l := v.(pyTuple)[0].(*pyList); len(l.items) != 1 {
		t.Fatalf("memo does not share the list: %v", l.items)
	}

	// True and 1 are the same key in Python.
	p = (&pk{}).proto(2).op(opEmptyDict).op(opNewTrue).str("x").op(opSetItem).int(1).str("y").op(opSetItem, opStop)
	v, _ = unpickle(p.b)
	if d := v.(*pyDict); len(d.keys) != 1 || d.vals[0] != "y" {
		t.Fatalf("True/1 keys: %v %v", d.keys, d.vals)
	}
}

// Tensor arguments are validated as the pickle is read.
func TestRebuildTensorArgs(t *testing.T) {
	base := tspec{name: "x", class: "FloatStorage", key: "0", numel: 12, shape: []int64{3, 4}, stride: []int64{4, 1}}
	if _, err := unpickle(statePickle(base)); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(s *tspec){
		"past the end":      func(s *tspec) { s.offset = 1 },
		"stride too big":    func(s *tspec) { s.stride = []int64{5, 1} },
		"rank mismatch":     func(s *tspec) { s.stride = []int64{1} },
		"negative size":     func(s *tspec) { s.shape = []int64{-3, 4} },
		"negative stride":   func(s *tspec) { s.stride = []int64{-4, 1} },
		"negative offset":   func(s *tspec) { s.offset = -1 },
		"negative numel":    func(s *tspec) { s.numel = -1 },
		"stride overflow":   func(s *tspec) { s.numel, s.shape, s.stride = 1<<40, []int64{3, 1 << 20}, []int64{1 << 62, 1 << 62} },
		"numel overflow":    func(s *tspec) { s.shape, s.stride = []int64{1 << 32, 1 << 32, 1 << 32}, []int64{0, 0, 0} },
		"offset past empty": func(s *tspec) { s.shape, s.offset = []int64{0, 4}, 13 },
		"numel bytes overflow": func(s *tspec) {
			s.class, s.numel = "DoubleStorage", 1<<61
		},
	}
	for name, mutate := range bad {
		s := base
		mutate(&s)
		if _, err := unpickle(statePickle(s)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
	s := base
	s.shape, s.stride = make([]int64, 65), make([]int64, 65)
	if _, err := unpickle(statePickle(s)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("65 dims: %v", err)
	}
	// Wrong argument count.
	p := (&pk{}).proto(2).global("torch._utils", "_rebuild_tensor_v2").int(1).op(opTuple1, opReduce, opStop)
	if _, err := unpickle(p.b); !errors.Is(err, ErrFormat) {
		t.Errorf("1 argument: %v", err)
	}
}

// A crafted pickle that rebuilds one big OrderedDict over and over from a shared list must be cut off by
// the work budget instead of taking quadratic time and memory.
func TestPickleWorkBudget(t *testing.T) {
	const pairs = 20000
	p := (&pk{}).proto(2).global("collections", "OrderedDict").op(opBinPut, 0, opPop, opEmptyList, opBinPut, 1, opMark)
	for i := range pairs {
		p.op(opBinInt).b = binary.LittleEndian.AppendUint32(p.b, uint32(i))
		p.op(opNone, opTuple2)
	}
	p.op(opAppends, opPop)
	for range pairs {
		p.op(opBinGet, 0, opBinGet, 1, opTuple1, opReduce, opPop)
	}
	start := time.Now()
	_, err := unpickle(p.op(opNone, opStop).b)
	wantKind(t, err, ErrFormat)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}
