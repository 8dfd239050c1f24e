package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// This file is a restricted pickle virtual machine. A pickle is a program: GLOBAL imports any Python callable
// and REDUCE calls it, so a general unpickler runs arbitrary code. This one understands only the opcodes that
// torch.save emits for a state_dict and resolves GLOBAL against a fixed allow-list; every callable it accepts is
// interpreted here (it builds a dict or describes a tensor view), never executed. Anything else is refused.
//
// Resource use is bounded by the input: every opcode consumes at least one byte and pushes at most one value,
// and the opcodes that copy many values (TUPLE, APPENDS, SETITEMS, OrderedDict(pairs)) draw from a work budget
// proportional to the input length, so a crafted pickle cannot turn a few kilobytes into quadratic time or
// memory.

// Values on the unpickler stack. Python ints are int64, floats float64, str string, bytes []byte, None nil,
// bool bool, tuple pyTuple. Lists and dicts are pointers because pickles share and mutate them through the memo.
type (
	pyTuple  []any
	pyList   struct{ items []any }
	pyBigInt struct{} // an int that does not fit int64: never a valid size, offset or numel
	pyGlobal struct{ module, name string }
	pyDict   struct {
		keys, vals []any
		index      map[any]int
		// ordered marks a collections.OrderedDict: torch attaches state_dict._metadata to it with BUILD.
		ordered bool
	}
	// storageRef is a persistent id resolved to a description of a torch storage; its bytes live in the
	// container (data/<key> in the zip) and are located by the caller.
	storageRef struct {
		class    string // e.g. "FloatStorage"
		dtype    DType
		key      string
		location string
		numel    int64
	}
	// tensorRef is the result of torch._utils._rebuild_tensor_v2: a strided view of a storage, already
	// checked to lie inside it.
	tensorRef struct {
		storage *storageRef
		offset  int64
		shape   []int64
		stride  []int64
	}
)

// noneKey and bytesKey keep None and bytes dict keys hashable (and distinct from str) in a Go map.
type (
	noneKey  struct{}
	bytesKey string
)

func newDict(ordered bool) *pyDict { return &pyDict{index: map[any]int{}, ordered: ordered} }

// set follows Python: a repeated key replaces the value but keeps its first position.
func (d *pyDict) set(k, v any) error {
	hk, ok := dictKey(k)
	if !ok {
		return &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("pickle: dict key of type %s", typeName(k))}
	}
	if i, ok := d.index[hk]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[hk] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// dictKey maps a Python key to a comparable Go value that hashes like Python would (True == 1 == 1.0).
// Containers are refused: a state_dict never uses them as keys and hashing them would need recursion.
func dictKey(k any) (any, bool) {
	switch k := k.(type) {
	case nil:
		return noneKey{}, true
	case string:
		return k, true
	case int64:
		return k, true
	case bool:
		if k {
			return int64(1), true
		}
		return int64(0), true
	case float64:
		if k == math.Trunc(k) && k >= -(1<<63) && k < 1<<63 {
			return int64(k), true
		}
		return k, true
	case []byte:
		return bytesKey(k), true
	case pyGlobal:
		return k, true
	}
	return nil, false
}

// storageTypes is the storage half of the GLOBAL allow-list: the typed storage classes torch.save names in
// persistent ids.
var storageTypes = map[string]DType{
	"FloatStorage":    F32,
	"DoubleStorage":   F64,
	"HalfStorage":     F16,
	"BFloat16Storage": BF16,
	"LongStorage":     I64,
	"IntStorage":      I32,
	"ShortStorage":    I16,
	"CharStorage":     I8,
	"ByteStorage":     U8,
	"BoolStorage":     Bool,
}

// maxDims matches PyTorch's own limit on tensor rank; it also keeps a crafted size tuple from costing more
// than a few words per tensor.
const maxDims = 64

const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opBinInt2        = 'M'
	opNone           = 'N'
	opBinFloat       = 'G'
	opBinUnicode     = 'X'
	opBinString      = 'T'
	opShortBinString = 'U'
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opEmptyList      = ']'
	opAppend         = 'a'
	opAppends        = 'e'
	opList           = 'l'
	opEmptyTuple     = ')'
	opTuple          = 't'
	opEmptyDict      = '}'
	opDict           = 'd'
	opSetItem        = 's'
	opSetItems       = 'u'
	opGlobal         = 'c'
	opReduce         = 'R'
	opBuild          = 'b'
	opBinPersID      = 'Q'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opProto          = 0x80
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
)

// opNames names every pickle opcode, so an error can say which one was refused.
var opNames = map[byte]string{
	'(': "MARK", '.': "STOP", '0': "POP", '1': "POP_MARK", '2': "DUP", 'F': "FLOAT", 'I': "INT",
	'J': "BININT", 'K': "BININT1", 'L': "LONG", 'M': "BININT2", 'N': "NONE", 'P': "PERSID", 'Q': "BINPERSID",
	'R': "REDUCE", 'S': "STRING", 'T': "BINSTRING", 'U': "SHORT_BINSTRING", 'V': "UNICODE", 'X': "BINUNICODE",
	'a': "APPEND", 'b': "BUILD", 'c': "GLOBAL", 'd': "DICT", '}': "EMPTY_DICT", 'e': "APPENDS", 'g': "GET",
	'h': "BINGET", 'i': "INST", 'j': "LONG_BINGET", 'l': "LIST", ']': "EMPTY_LIST", 'o': "OBJ", 'p': "PUT",
	'q': "BINPUT", 'r': "LONG_BINPUT", 's': "SETITEM", 't': "TUPLE", ')': "EMPTY_TUPLE", 'u': "SETITEMS",
	'G': "BINFLOAT", 0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1",
	0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4",
	'B': "BINBYTES", 'C': "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 0x8e: "BINBYTES8",
	0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL",
	0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}

// unsafeOps instantiate or import objects by themselves; they are never needed for a state_dict.
var unsafeOps = map[byte]bool{'i': true, 'o': true, 0x81: true, 0x82: true, 0x83: true, 0x84: true, 0x92: true}

type unpickler struct {
	data   []byte
	pos    int // offset of the next byte to read
	op     int // offset of the opcode being executed, for messages
	stack  []any
	marks  []int // stack heights at each open MARK (Python's metastack)
	memo   map[uint64]any
	budget int // remaining element copies, see the file comment
}

// unpickle runs a pickle under the restrictions above and returns the object STOP produced.
func unpickle(data []byte) (any, error) {
	u := &unpickler{data: data, memo: map[uint64]any{}, budget: 4*len(data) + 1024}
	return u.run()
}

func (u *unpickler) fail(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf("pickle offset %d: ", u.op) + fmt.Sprintf(format, args...)}
}

func (u *unpickler) truncated() error { return u.fail(ErrFormat, "truncated pickle") }

func (u *unpickler) read(n uint64) ([]byte, error) {
	if n > uint64(len(u.data)-u.pos) {
		return nil, u.truncated()
	}
	b := u.data[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, nil
}

func (u *unpickler) readByte() (byte, error) {
	b, err := u.read(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (u *unpickler) readU16() (uint64, error) {
	b, err := u.read(2)
	if err != nil {
		return 0, err
	}
	return uint64(binary.LittleEndian.Uint16(b)), nil
}

func (u *unpickler) readU32() (uint64, error) {
	b, err := u.read(4)
	if err != nil {
		return 0, err
	}
	return uint64(binary.LittleEndian.Uint32(b)), nil
}

func (u *unpickler) readU64() (uint64, error) {
	b, err := u.read(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// readLine returns the bytes up to (not including) the next newline, as GLOBAL's text arguments.
func (u *unpickler) readLine() (string, error) {
	rest := u.data[u.pos:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		return "", u.truncated()
	}
	u.pos += i + 1
	return string(rest[:i]), nil
}

// frameBase is where the current MARK frame starts: pops never reach below it, as in Python.
func (u *unpickler) frameBase() int {
	if len(u.marks) == 0 {
		return 0
	}
	return u.marks[len(u.marks)-1]
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	if len(u.stack) <= u.frameBase() {
		return nil, u.fail(ErrFormat, "stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack[len(u.stack)-1] = nil
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) <= u.frameBase() {
		return nil, u.fail(ErrFormat, "stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// spend charges n element copies against the budget.
func (u *unpickler) spend(n int) error {
	if n > u.budget {
		return u.fail(ErrFormat, "pickle does more work than its size allows")
	}
	u.budget -= n
	return nil
}

// popMark returns a copy of the items above the innermost MARK and removes them and the mark.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.fail(ErrFormat, "no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	if err := u.spend(len(u.stack) - m); err != nil {
		return nil, err
	}
	items := append([]any(nil), u.stack[m:]...)
	clear(u.stack[m:])
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) popN(n int) ([]any, error) {
	if len(u.stack)-u.frameBase() < n {
		return nil, u.fail(ErrFormat, "stack underflow")
	}
	items := append([]any(nil), u.stack[len(u.stack)-n:]...)
	clear(u.stack[len(u.stack)-n:])
	u.stack = u.stack[:len(u.stack)-n]
	return items, nil
}

func (u *unpickler) run() (any, error) {
	for {
		u.op = u.pos
		op, err := u.readByte()
		if err != nil {
			return nil, u.fail(ErrFormat, "pickle ends without STOP")
		}
		if op == opStop {
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		}
		if err := u.step(op); err != nil {
			return nil, err
		}
	}
}

func (u *unpickler) step(op byte) error {
	switch op {
	case opProto:
		v, err := u.readByte()
		if err != nil {
			return err
		}
		if v > 5 {
			return u.fail(ErrUnsupported, "pickle protocol %d", v)
		}
	case opFrame:
		// Frames only help streaming readers; the whole pickle is in memory, so the length is just checked.
		n, err := u.readU64()
		if err != nil {
			return err
		}
		if n > uint64(len(u.data)-u.pos) {
			return u.truncated()
		}
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		if len(u.stack) > u.frameBase() {
			_, err := u.pop()
			return err
		}
		_, err := u.popMark()
		return err
	case opPopMark:
		_, err := u.popMark()
		return err
	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		v, err := u.readU32()
		if err != nil {
			return err
		}
		u.push(int64(int32(uint32(v))))
	case opBinInt1:
		v, err := u.readByte()
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opBinInt2:
		v, err := u.readU16()
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opLong1, opLong4:
		var n uint64
		var err error
		if op == opLong1 {
			var b byte
			b, err = u.readByte()
			n = uint64(b)
		} else {
			n, err = u.readU32()
			if err == nil && int32(uint32(n)) < 0 {
				return u.fail(ErrFormat, "LONG4 with negative length")
			}
		}
		if err != nil {
			return err
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		u.push(decodeLong(b))
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opBinUnicode, opShortBinUni, opBinUnicode8, opBinString, opShortBinString:
		n, err := u.readLen(op)
		if err != nil {
			return err
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		u.push(string(b))
	case opBinBytes, opShortBinBytes, opBinBytes8:
		n, err := u.readLen(op)
		if err != nil {
			return err
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		u.push(append([]byte(nil), b...))
	case opEmptyList:
		u.push(&pyList{})
	case opEmptyTuple:
		u.push(pyTuple{})
	case opEmptyDict:
		u.push(newDict(false))
	case opList:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pyList{items: items})
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opTuple1, opTuple2, opTuple3:
		items, err := u.popN(int(op-opTuple1) + 1)
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := newDict(false)
		if err := u.setItems(d, items); err != nil {
			return err
		}
		u.push(d)
	case opAppend:
		v, err := u.pop()
		if err != nil {
			return err
		}
		return u.appendTo([]any{v})
	case opAppends:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.appendTo(items)
	case opSetItem:
		kv, err := u.popN(2)
		if err != nil {
			return err
		}
		return u.setItemsOnTop(kv)
	case opSetItems:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.setItemsOnTop(items)
	case opBinPut, opLongBinPut, opMemoize:
		var idx uint64
		var err error
		switch op {
		case opBinPut:
			var b byte
			b, err = u.readByte()
			idx = uint64(b)
		case opLongBinPut:
			idx, err = u.readU32()
		default:
			idx = uint64(len(u.memo))
		}
		if err != nil {
			return err
		}
		v, err := u.top()
		if err != nil {
			return err
		}
		u.memo[idx] = v
	case opBinGet, opLongBinGet:
		var idx uint64
		var err error
		if op == opBinGet {
			var b byte
			b, err = u.readByte()
			idx = uint64(b)
		} else {
			idx, err = u.readU32()
		}
		if err != nil {
			return err
		}
		v, ok := u.memo[idx]
		if !ok {
			return u.fail(ErrFormat, "memo key %d not defined", idx)
		}
		u.push(v)
	case opGlobal:
		module, err := u.readLine()
		if err != nil {
			return err
		}
		name, err := u.readLine()
		if err != nil {
			return err
		}
		return u.global(module, name)
	case opStackGlobal:
		mn, err := u.popN(2)
		if err != nil {
			return err
		}
		module, ok1 := mn[0].(string)
		name, ok2 := mn[1].(string)
		if !ok1 || !ok2 {
			return u.fail(ErrFormat, "STACK_GLOBAL needs two str, got %s and %s", typeName(mn[0]), typeName(mn[1]))
		}
		return u.global(module, name)
	case opReduce:
		fa, err := u.popN(2)
		if err != nil {
			return err
		}
		v, err := u.reduce(fa[0], fa[1])
		if err != nil {
			return err
		}
		u.push(v)
	case opBuild:
		// BUILD calls __setstate__ or updates __dict__; the only legitimate target in a state_dict is the
		// OrderedDict whose _metadata (module versions, not needed to read tensors) torch sets this way. The
		// state is dropped.
		if _, err := u.pop(); err != nil {
			return err
		}
		obj, err := u.top()
		if err != nil {
			return err
		}
		if d, ok := obj.(*pyDict); !ok || !d.ordered {
			return u.fail(ErrUnsafe, "BUILD on %s is not allowed", typeName(obj))
		}
	case opBinPersID:
		pid, err := u.pop()
		if err != nil {
			return err
		}
		s, err := u.persistentLoad(pid)
		if err != nil {
			return err
		}
		u.push(s)
	default:
		name, known := opNames[op]
		if !known {
			return u.fail(ErrFormat, "invalid opcode 0x%02x", op)
		}
		if unsafeOps[op] {
			return u.fail(ErrUnsafe, "opcode %s (0x%02x) is not allowed", name, op)
		}
		return u.fail(ErrFormat, "opcode %s (0x%02x) is not supported in a state_dict pickle", name, op)
	}
	return nil
}

// readLen reads the length prefix of a string or bytes opcode.
func (u *unpickler) readLen(op byte) (uint64, error) {
	switch op {
	case opShortBinUni, opShortBinString, opShortBinBytes:
		b, err := u.readByte()
		return uint64(b), err
	case opBinUnicode8, opBinBytes8:
		return u.readU64()
	case opBinString:
		n, err := u.readU32()
		if err == nil && int32(uint32(n)) < 0 {
			return 0, u.fail(ErrFormat, "BINSTRING with negative length")
		}
		return n, err
	default:
		return u.readU32()
	}
}

// decodeLong decodes a little-endian two's-complement integer of any width (LONG1/LONG4).
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	neg := b[len(b)-1]&0x80 != 0
	// Bytes beyond the eighth must be pure sign extension for the value to fit an int64.
	if len(b) > 8 {
		ext := byte(0)
		if neg {
			ext = 0xff
		}
		for _, c := range b[8:] {
			if c != ext {
				return pyBigInt{}
			}
		}
		if (b[7]&0x80 != 0) != neg {
			return pyBigInt{}
		}
		b = b[:8]
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if neg && len(b) < 8 {
		v |= ^uint64(0) << (8 * len(b))
	}
	return int64(v)
}

func (u *unpickler) appendTo(items []any) error {
	t, err := u.top()
	if err != nil {
		return err
	}
	l, ok := t.(*pyList)
	if !ok {
		return u.fail(ErrFormat, "APPEND to %s", typeName(t))
	}
	if err := u.spend(len(items)); err != nil {
		return err
	}
	l.items = append(l.items, items...)
	return nil
}

func (u *unpickler) setItemsOnTop(items []any) error {
	t, err := u.top()
	if err != nil {
		return err
	}
	d, ok := t.(*pyDict)
	if !ok {
		return u.fail(ErrFormat, "SETITEM on %s", typeName(t))
	}
	return u.setItems(d, items)
}

func (u *unpickler) setItems(d *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return u.fail(ErrFormat, "odd number of items for a dict")
	}
	for i := 0; i < len(items); i += 2 {
		if err := d.set(items[i], items[i+1]); err != nil {
			return u.wrap(err)
		}
	}
	return nil
}

// wrap adds the current pickle offset to an error produced by a helper that does not know it.
func (u *unpickler) wrap(err error) error {
	if e, ok := err.(*Error); ok && !strings.HasPrefix(e.Msg, "pickle offset") {
		e.Msg = fmt.Sprintf("pickle offset %d: %s", u.op, strings.TrimPrefix(e.Msg, "pickle: "))
	}
	return err
}

// global resolves GLOBAL/STACK_GLOBAL against the allow-list. This is the security boundary: a name that is
// not listed is refused before anything can refer to it.
func (u *unpickler) global(module, name string) error {
	ok := false
	switch module {
	case "collections":
		ok = name == "OrderedDict"
	case "torch._utils":
		ok = name == "_rebuild_tensor_v2"
	case "torch":
		_, ok = storageTypes[name]
	}
	if !ok {
		// Other torch storage classes (complex, float8, untyped, ...) are harmless but name dtypes this
		// package cannot convert: report them as such rather than as an attack.
		if module == "torch" && strings.HasSuffix(name, "Storage") && isIdent(name) {
			return u.fail(ErrUnsupported, "storage type torch.%s", name)
		}
		return u.fail(ErrUnsafe, "global %s is not allowed", printable(module+"."+name))
	}
	u.push(pyGlobal{module, name})
	return nil
}

func (u *unpickler) reduce(callable, args any) (any, error) {
	g, ok := callable.(pyGlobal)
	if !ok {
		return nil, u.fail(ErrUnsafe, "REDUCE on %s is not allowed", typeName(callable))
	}
	argv, ok := args.(pyTuple)
	if !ok {
		return nil, u.fail(ErrFormat, "REDUCE arguments are %s, not a tuple", typeName(args))
	}
	switch {
	case g == pyGlobal{"collections", "OrderedDict"}:
		return u.orderedDict(argv)
	case g == pyGlobal{"torch._utils", "_rebuild_tensor_v2"}:
		return u.rebuildTensor(argv)
	}
	return nil, u.fail(ErrUnsafe, "REDUCE on %s.%s is not allowed", g.module, g.name)
}

// orderedDict interprets OrderedDict() and OrderedDict(iterable of pairs or dict).
func (u *unpickler) orderedDict(args pyTuple) (any, error) {
	d := newDict(true)
	if len(args) == 0 {
		return d, nil
	}
	if len(args) > 1 {
		return nil, u.fail(ErrFormat, "OrderedDict with %d arguments", len(args))
	}
	var pairs []any
	switch src := args[0].(type) {
	case *pyDict:
		if err := u.spend(len(src.keys)); err != nil {
			return nil, err
		}
		for i, k := range src.keys {
			if err := d.set(k, src.vals[i]); err != nil {
				return nil, u.wrap(err)
			}
		}
		return d, nil
	case *pyList:
		pairs = src.items
	case pyTuple:
		pairs = src
	default:
		return nil, u.fail(ErrFormat, "OrderedDict from %s", typeName(args[0]))
	}
	if err := u.spend(len(pairs)); err != nil {
		return nil, err
	}
	for _, p := range pairs {
		var kv []any
		switch p := p.(type) {
		case pyTuple:
			kv = p
		case *pyList:
			kv = p.items
		}
		if len(kv) != 2 {
			return nil, u.fail(ErrFormat, "OrderedDict item is not a pair")
		}
		if err := d.set(kv[0], kv[1]); err != nil {
			return nil, u.wrap(err)
		}
	}
	return d, nil
}

// persistentLoad interprets torch's persistent id ('storage', StorageType, key, location, numel).
func (u *unpickler) persistentLoad(pid any) (any, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 {
		return nil, u.fail(ErrFormat, "persistent id is %s, want a 5-tuple ('storage', type, key, location, numel)", typeName(pid))
	}
	if s, _ := t[0].(string); s != "storage" {
		return nil, u.fail(ErrUnsupported, "persistent id kind %s", describe(t[0]))
	}
	g, ok := t[1].(pyGlobal)
	dt, known := storageTypes[g.name]
	if !ok || g.module != "torch" || !known {
		return nil, u.fail(ErrFormat, "persistent id storage type is %s", typeName(t[1]))
	}
	key, ok1 := t[2].(string)
	loc, ok2 := t[3].(string)
	numel, ok3 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 {
		return nil, u.fail(ErrFormat, "persistent id fields are (%s, %s, %s), want (str, str, int)", typeName(t[2]), typeName(t[3]), typeName(t[4]))
	}
	if numel < 0 || numel > math.MaxInt64/int64(dt.itemSize()) {
		return nil, u.fail(ErrFormat, "storage %q has invalid numel %d", printable(key), numel)
	}
	return &storageRef{class: g.name, dtype: dt, key: key, location: loc, numel: numel}, nil
}

// rebuildTensor interprets _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
// backward_hooks[, metadata]). requires_grad, hooks and metadata do not affect the values and are ignored.
func (u *unpickler) rebuildTensor(args pyTuple) (any, error) {
	if len(args) != 6 && len(args) != 7 {
		return nil, u.fail(ErrFormat, "_rebuild_tensor_v2 with %d arguments, want 6 or 7", len(args))
	}
	st, ok := args[0].(*storageRef)
	if !ok {
		return nil, u.fail(ErrFormat, "_rebuild_tensor_v2 storage is %s", typeName(args[0]))
	}
	offset, ok := args[1].(int64)
	if !ok || offset < 0 {
		return nil, u.fail(ErrFormat, "_rebuild_tensor_v2 storage_offset is %s", describe(args[1]))
	}
	shape, err := u.intTuple(args[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := u.intTuple(args[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(shape) != len(stride) {
		return nil, u.fail(ErrFormat, "size has %d dims but stride has %d", len(shape), len(stride))
	}
	if _, _, msg := checkView(shape, stride, offset, st.numel); msg != "" {
		return nil, u.fail(ErrFormat, "tensor on storage %q: %s", printable(st.key), msg)
	}
	return &tensorRef{storage: st, offset: offset, shape: shape, stride: stride}, nil
}

func (u *unpickler) intTuple(v any, what string) ([]int64, error) {
	var items []any
	switch v := v.(type) {
	case pyTuple:
		items = v
	case *pyList:
		items = v.items
	default:
		return nil, u.fail(ErrFormat, "tensor %s is %s, want a tuple", what, typeName(v))
	}
	if len(items) > maxDims {
		return nil, u.fail(ErrUnsupported, "tensor %s has %d dims (max %d)", what, len(items), maxDims)
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, ok := it.(int64)
		if !ok || n < 0 {
			return nil, u.fail(ErrFormat, "tensor %s[%d] is %s", what, i, describe(it))
		}
		out[i] = n
	}
	return out, nil
}

func isIdent(s string) bool {
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case pyBigInt:
		return "int (too large)"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case pyTuple:
		return fmt.Sprintf("tuple of %d", len(v))
	case *pyList:
		return "list"
	case *pyDict:
		if v.ordered {
			return "OrderedDict"
		}
		return "dict"
	case pyGlobal:
		return printable(v.module) + "." + printable(v.name)
	case *storageRef:
		return "storage"
	case *tensorRef:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}

// describe shows small scalars by value and everything else by type, never recursing into containers.
func describe(v any) string {
	switch v := v.(type) {
	case int64:
		return fmt.Sprint(v)
	case string:
		return fmt.Sprintf("%q", printable(v))
	}
	return typeName(v)
}

// printable caps and escapes attacker-controlled text that ends up in error messages.
func printable(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			q := strconv.Quote(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}
