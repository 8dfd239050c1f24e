package cpu

// A minimal safetensors reader for the golden tests, private to this package so that its tests do not
// depend on loader/. Format: u64 little-endian header length N, N bytes of JSON mapping each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the header; the key
// "__metadata__" holds free-form strings), then the raw little-endian data.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/webvar/webvar/core"
)

type safetensors struct {
	header map[string]stEntry
	data   []byte
}

type stEntry struct {
	DType   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
}

func openSafetensors(path string) (*safetensors, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(raw) < 8 {
		return nil, fmt.Errorf("%s: too short for a safetensors file", path)
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	if n > uint64(len(raw)-8) {
		return nil, fmt.Errorf("%s: header length %d exceeds the file", path, n)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &fields); err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	st := &safetensors{header: map[string]stEntry{}, data: raw[8+n:]}
	for name, msg := range fields {
		if name == "__metadata__" {
			continue
		}
		var e stEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("%s: entry %q: %w", path, name, err)
		}
		if e.Offsets[0] < 0 || e.Offsets[0] > e.Offsets[1] || e.Offsets[1] > len(st.data) {
			return nil, fmt.Errorf("%s: entry %q: bad offsets %v", path, name, e.Offsets)
		}
		st.header[name] = e
	}
	return st, nil
}

// f32 returns an F32 tensor.
func (st *safetensors) f32(name string) (core.HostTensor, error) {
	e, ok := st.header[name]
	if !ok {
		return core.HostTensor{}, fmt.Errorf("tensor %q not found", name)
	}
	shape := core.Shape(e.Shape)
	b := st.data[e.Offsets[0]:e.Offsets[1]]
	if e.DType != "F32" || len(b) != 4*shape.Numel() {
		return core.HostTensor{}, fmt.Errorf("tensor %q: dtype %s with %d bytes for shape %v, want F32", name, e.DType, len(b), shape)
	}
	v := make([]float32, shape.Numel())
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return core.HostTensor{Shape: shape, Data: v}, nil
}
