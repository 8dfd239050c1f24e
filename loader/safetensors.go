package loader

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
)

// safetensors: an 8-byte little-endian header length N, N bytes of JSON
//
//	{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}
//
// and then the data; offsets are relative to the first byte after the header.

// maxHeaderBytes caps the JSON header (the reference implementation uses the same 100 MB limit).
const maxHeaderBytes = 100 << 20

type stEntry struct {
	DType   *string   `json:"dtype"`
	Shape   *[]uint64 `json:"shape"`
	Offsets *[]uint64 `json:"data_offsets"`
}

func openSafetensors(r io.ReaderAt, size int64) (*Checkpoint, error) {
	fail := func(format string, args ...any) error {
		return &Error{Kind: ErrFormat, Msg: "safetensors: " + fmt.Sprintf(format, args...)}
	}
	if size < 8 {
		return nil, fail("file too short")
	}
	var lenBuf [8]byte
	if err := readFull(r, lenBuf[:], 0); err != nil {
		return nil, &Error{Kind: ErrFormat, Msg: "safetensors: reading the header length", Err: err}
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > uint64(size-8) {
		return nil, fail("header length %d exceeds the file (%d bytes)", n, size)
	}
	if n > maxHeaderBytes {
		return nil, &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("safetensors: header of %d bytes (max %d)", n, maxHeaderBytes)}
	}
	header := make([]byte, n)
	if err := readFull(r, header, 8); err != nil {
		return nil, &Error{Kind: ErrFormat, Msg: "safetensors: reading the header", Err: err}
	}
	dataStart := 8 + int64(n)
	dataLen := size - dataStart

	// The header is walked token by token rather than unmarshalled into a map so that duplicate names, which
	// a map would silently merge, are rejected.
	dec := json.NewDecoder(bytes.NewReader(header))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fail("header is not a JSON object")
	}
	c := &Checkpoint{format: "safetensors"}
	seen := map[string]bool{}
	begins := map[*tensor]uint64{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &Error{Kind: ErrFormat, Msg: "safetensors: header JSON", Err: err}
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, &Error{Kind: ErrFormat, Msg: "safetensors: header JSON", Err: err}
		}
		if seen[name] {
			return nil, fail("duplicate entry %q", printable(name))
		}
		seen[name] = true
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &c.metadata); err != nil {
				return nil, &Error{Kind: ErrFormat, Msg: "safetensors: __metadata__ must map str to str", Err: err}
			}
			continue
		}
		t, begin, err := stTensor(name, raw, dataStart, dataLen)
		if err != nil {
			return nil, err
		}
		begins[t] = begin
		c.tensors = append(c.tensors, t)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fail("header JSON object not closed")
	}
	// Writers pad the header with spaces; anything else after the object is corruption.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail("trailing data after the header JSON")
	}

	// File order is data order. Sorting also makes the overlap check a single pass.
	sort.SliceStable(c.tensors, func(i, j int) bool {
		bi, bj := begins[c.tensors[i]], begins[c.tensors[j]]
		if bi != bj {
			return bi < bj
		}
		return c.tensors[i].info.Name < c.tensors[j].info.Name
	})
	end := uint64(0)
	for _, t := range c.tensors {
		b := begins[t]
		if b < end {
			return nil, fail("tensor %q overlaps the previous tensor's data", printable(t.info.Name))
		}
		end = b + uint64(t.st.nbytes())
	}
	return c, nil
}

// stTensor parses and checks one header entry; it returns the tensor and its begin offset.
func stTensor(name string, raw json.RawMessage, dataStart, dataLen int64) (*tensor, uint64, error) {
	fail := func(kind error, format string, args ...any) error {
		return &Error{Kind: kind, Tensor: name, Msg: "safetensors: " + fmt.Sprintf(format, args...)}
	}
	var e stEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, 0, &Error{Kind: ErrFormat, Tensor: name, Msg: "safetensors: header entry", Err: err}
	}
	if e.DType == nil || e.Shape == nil || e.Offsets == nil {
		return nil, 0, fail(ErrFormat, "entry needs dtype, shape and data_offsets")
	}
	dt := DType(*e.DType)
	if dt.itemSize() == 0 {
		return nil, 0, fail(ErrUnsupported, "dtype %q", printable(*e.DType))
	}
	if len(*e.Shape) > maxDims {
		return nil, 0, fail(ErrUnsupported, "%d dimensions (max %d)", len(*e.Shape), maxDims)
	}
	if len(*e.Offsets) != 2 {
		return nil, 0, fail(ErrFormat, "data_offsets has %d values, want 2", len(*e.Offsets))
	}
	begin, end := (*e.Offsets)[0], (*e.Offsets)[1]
	if begin > end || end > uint64(dataLen) {
		return nil, 0, fail(ErrFormat, "data_offsets [%d, %d] outside the %d data bytes", begin, end, dataLen)
	}
	shape := make([]int64, len(*e.Shape))
	numel := uint64(1)
	for i, d := range *e.Shape {
		if d > math.MaxInt64 || (d != 0 && numel > math.MaxInt64/d) {
			return nil, 0, fail(ErrFormat, "shape %v overflows", *e.Shape)
		}
		numel *= d
		shape[i] = int64(d)
	}
	is := uint64(dt.itemSize())
	if numel > math.MaxInt64/is || numel*is != end-begin {
		return nil, 0, fail(ErrFormat, "shape %v of %s needs %d bytes, data_offsets give %d", *e.Shape, dt, numel*is, end-begin)
	}
	st := &storage{key: name, dtype: dt, numel: int64(numel), off: dataStart + int64(begin)}
	stride := make([]int64, len(shape))
	s := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		stride[i] = s
		s *= shape[i] // bounded by numel, or 0
	}
	t, err := newTensor(name, st, shape, stride, 0, int64(numel))
	if err != nil {
		return nil, 0, err
	}
	return t, begin, nil
}
