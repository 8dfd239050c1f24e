package loader

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"
)

// The fuzz targets check the package's promises on arbitrary input: no panic, no unbounded allocation
// (the fuzzer's memory limit would trip), every failure a typed *Error, and every successful read the right
// length.

func smallPTH(t testing.TB, method uint16) []byte {
	specs := []tspec{
		{name: "a", class: "FloatStorage", key: "0", numel: 6, shape: []int64{2, 3}, stride: []int64{3, 1}},
		{name: "a_t", class: "FloatStorage", key: "0", numel: 6, shape: []int64{3, 2}, stride: []int64{1, 3}},
		{name: "h", class: "HalfStorage", key: "1", numel: 4, offset: 1, shape: []int64{3}, stride: []int64{1}},
		{name: "i", class: "LongStorage", key: "2", numel: 2, shape: []int64{}, stride: []int64{}},
	}
	return buildPTH(t, "a", statePickle(specs...), map[string][]byte{
		"0": f32Bytes(iota32(6)...), "1": u16Bytes(1, 2, 3, 4), "2": i64Bytes(5, 6),
	}, method)
}

func FuzzPickle(f *testing.F) {
	f.Add(fixturePickle(f))
	f.Add(statePickle(tspec{name: "w", class: "FloatStorage", key: "0", numel: 12, shape: []int64{3, 4}, stride: []int64{4, 1}}))
	f.Add(statePickle(
		tspec{name: "t", class: "FloatStorage", key: "0", numel: 24, offset: 1, shape: []int64{2, 3, 2}, stride: []int64{1, 6, 3}},
		tspec{name: "b", class: "FloatStorage", key: "0", numel: 24, offset: 5, shape: []int64{4, 2}, stride: []int64{0, 2}},
		tspec{name: "h", class: "HalfStorage", key: "1", numel: 3, shape: []int64{}, stride: []int64{}},
	))
	for _, name := range []string{"state_p2", "state_p4", "state_p5", "evil_system_p2", "evil_eval_p4"} {
		f.Add(readFile(f, picklesDir+name+".pkl"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		obj, err := unpickle(data)
		if err != nil {
			checkTyped(t, err)
			return
		}
		items, err := stateDict(obj)
		if err != nil {
			checkTyped(t, err)
			return
		}
		// Give every storage the pickle asks for an entry of the right size, element i of a float storage
		// holding i, then check each F32 view against a direct evaluation of its strides. This takes fuzzed
		// views through the whole .pth path, past the zip CRCs that stop byte-level mutation in FuzzPTH.
		storages := map[string][]byte{}
		for _, it := range items {
			st := it.ref.storage
			if _, _, msg := checkView(it.ref.shape, it.ref.stride, it.ref.offset, st.numel); msg != "" {
				t.Fatalf("%s: accepted an invalid view: %s", it.name, msg)
			}
			nbytes := st.numel * int64(st.dtype.itemSize())
			if nbytes > 1<<20 {
				return
			}
			if _, ok := storages[st.key]; !ok {
				if st.dtype == F32 {
					storages[st.key] = f32Bytes(iota32(int(st.numel))...)
				} else {
					storages[st.key] = make([]byte, nbytes)
				}
			}
		}
		z, ok := tryBuildPTH(data, storages)
		if !ok {
			return
		}
		c, err := openBytes(z)
		if err != nil {
			checkTyped(t, err)
			return
		}
		for _, it := range items {
			info, _ := c.Info(it.name)
			got, err := c.Float32(it.name)
			if err != nil {
				checkTyped(t, err)
				continue
			}
			if info.DType != F32 || c.byName[it.name].st.key != it.ref.storage.key {
				continue // a later duplicate key replaced this entry
			}
			if want := stridedRef(it.ref); !slicesEqual(got, want) {
				t.Fatalf("%s: shape %v stride %v offset %d: got %v, want %v", it.name, it.ref.shape, it.ref.stride, it.ref.offset, got, want)
			}
		}
	})
}

// stridedRef evaluates a view of the storage 0, 1, 2, ... element by element from its definition.
func stridedRef(r *tensorRef) []float32 {
	numel := int64(1)
	for _, d := range r.shape {
		numel *= d
	}
	out := make([]float32, 0, numel)
	idx := make([]int64, len(r.shape))
	for range numel {
		pos := r.offset
		for d := range idx {
			pos += idx[d] * r.stride[d]
		}
		out = append(out, float32(pos))
		for d := len(idx) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < r.shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tryBuildPTH is buildPTH for fuzzed storage keys, which zip.Writer may refuse.
func tryBuildPTH(pkl []byte, storages map[string][]byte) ([]byte, bool) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, data []byte) bool {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			return false
		}
		_, err = w.Write(data)
		return err == nil
	}
	if !add("r/data.pkl", pkl) {
		return nil, false
	}
	for _, k := range sortedKeys(storages) {
		if !add("r/data/"+k, storages[k]) {
			return nil, false
		}
	}
	return buf.Bytes(), zw.Close() == nil
}

func FuzzPTH(f *testing.F) {
	f.Add(smallPTH(f, zip.Store))
	f.Add(smallPTH(f, zip.Deflate))
	f.Add(buildPTH(f, "archive", readFile(f, picklesDir+"state_p4.pkl"), map[string][]byte{
		"0": f32Bytes(0, 1, 2, 3, 4, 5), "1": i64Bytes(10, 11, 12, 13), "2": u16Bytes(0x3e00),
	}, zip.Store))
	if !testing.Short() {
		f.Add(readFile(f, varPTH))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		readAll(t, data)
	})
}

func FuzzSafetensors(f *testing.F) {
	header := stHeader(f, map[string]any{
		"a":            map[string]any{"dtype": "F32", "shape": []int{2}, "data_offsets": []int{0, 8}},
		"b":            map[string]any{"dtype": "I64", "shape": []int{}, "data_offsets": []int{8, 16}},
		"c":            map[string]any{"dtype": "BF16", "shape": []int{1, 2}, "data_offsets": []int{16, 20}},
		"__metadata__": map[string]string{"k": "v"},
	})
	f.Add(buildST(header, append(append(f32Bytes(1, 2), i64Bytes(3)...), u16Bytes(0x3f80, 0x4000)...)))
	f.Add(goldenExcerpt(f, "op.silu.in", "vae.idx.s0", "ar1.cfg", "ar0.g_seed"))
	f.Fuzz(func(t *testing.T, data []byte) {
		readAll(t, data)
	})
}

// goldenExcerpt rebuilds a few tensors of golden.safetensors, with their original bytes and the original
// metadata, as a small safetensors file: real content, but small enough for the fuzzer to mutate quickly.
func goldenExcerpt(t testing.TB, names ...string) []byte {
	file := readFile(t, goldenST)
	n := binary.LittleEndian.Uint64(file)
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(file[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{"__metadata__": hdr["__metadata__"]}
	var data []byte
	for _, name := range names {
		var e struct {
			DType   string   `json:"dtype"`
			Shape   []int    `json:"shape"`
			Offsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(hdr[name], &e); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		begin := uint64(len(data))
		data = append(data, file[8+n+e.Offsets[0]:8+n+e.Offsets[1]]...)
		out[name] = map[string]any{"dtype": e.DType, "shape": e.Shape, "data_offsets": []uint64{begin, uint64(len(data))}}
	}
	return buildST(stHeader(t, out), data)
}
