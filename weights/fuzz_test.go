package weights

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/webvar/webvar/core"
)

// fuzzSeeds writes a tiny directory (every scheme, float16 and float32 scales, a quantized tensor of rank > 2, several chunks) and returns its manifest and chunks. The
// seeds are kept small on purpose: Go's input minimizer is quadratic in the input length, and with a
// kilobyte-sized manifest it stalls a worker for its whole 60 s budget on each new input.
func fuzzSeeds(f *testing.F) (manifest []byte, chunks [][]byte) {
	dir := f.TempDir()
	w, err := NewWriter(dir, WriterOptions{ChunkBytes: 32})
	if err != nil {
		f.Fatal(err)
	}
	q, err := core.Quantize(core.HostTensor{Shape: core.Shape{1, 33}, Data: make([]float32, 33)}, core.QuantInt4)
	if err != nil {
		f.Fatal(err)
	}
	q.Scales[0], q.Codes[0] = 0.5, 0x0000_00f1 // non-trivial codes: 1 and -1; 0.5 is stored as float16
	q32 := q
	q32.Scales = []float32{0.1, 0} // not a float16 value: float32 scales
	for _, err := range []error{
		w.AddF32("a", core.HostTensor{Shape: core.Shape{2, 2}, Data: []float32{1, -2, 0.5, 3}}, F32),
		w.AddF32("h", core.HostTensor{Shape: core.Shape{3}, Data: []float32{1, 65504, -0.25}}, F16),
		w.AddQuant("q", q),
		w.AddQuantAs("c", q, core.Shape{1, 3, 11}), // a quantized tensor of rank 3: rows [1, 33]
		w.AddQuant("s", q32),
	} {
		if err != nil {
			f.Fatal(err)
		}
	}
	m, err := w.Close("var", map[string]any{"p": []int{1, 2}}, map[string]string{"c": "x"})
	if err != nil {
		f.Fatal(err)
	}
	if manifest, err = os.ReadFile(filepath.Join(dir, ManifestFile)); err != nil {
		f.Fatal(err)
	}
	for _, c := range m.Chunks {
		b, err := os.ReadFile(filepath.Join(dir, c.File))
		if err != nil {
			f.Fatal(err)
		}
		chunks = append(chunks, b)
	}
	return manifest, chunks
}

// checkKind fails unless err is an *Error of one of this package's kinds.
func checkKind(t *testing.T, err error) {
	var we *Error
	if !errors.As(err, &we) {
		t.Fatalf("error %T %v is not *Error", err, err)
	}
	if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrIntegrity) {
		t.Fatalf("error %v has kind %v", err, we.Kind)
	}
}

// FuzzManifest decodes and validates arbitrary bytes: no panic, typed errors, and a manifest that is
// accepted re-encodes to bytes that decode to the same encoding.
func FuzzManifest(f *testing.F) {
	manifest, _ := fuzzSeeds(f)
	f.Add(manifest)
	f.Add(manifest[:len(manifest)/3])
	f.Add([]byte{0x80})
	f.Add([]byte{0x82, 0xa5, 'm', 'a', 'g', 'i', 'c', 0xae, 'W', 'E', 'B', 'V', 'A', 'R', '-', 'W', 'E', 'I', 'G', 'H', 'T', 'S',
		0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			checkKind(t, err)
			return
		}
		enc, err := EncodeManifest(m)
		if err != nil {
			t.Fatalf("accepted manifest does not re-encode: %v", err)
		}
		m2, err := DecodeManifest(enc)
		if err != nil {
			t.Fatalf("re-encoded manifest rejected: %v", err)
		}
		enc2, err := EncodeManifest(m2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %v", err)
		}
	})
}

// FuzzChunk decodes a chunk's tensors from arbitrary bytes (the hash check bypassed) under an arbitrary
// valid manifest: no panic, and every decoded tensor is consistent with its entry.
func FuzzChunk(f *testing.F) {
	manifest, chunks := fuzzSeeds(f)
	for i, c := range chunks {
		f.Add(manifest, c, uint16(i))
		mut := bytes.Clone(c)
		for k := 3; k < len(mut); k += 13 {
			mut[k] = 0xff // NaN/negative scales, non-zero padding codes
		}
		f.Add(manifest, mut, uint16(i))
	}
	f.Fuzz(func(t *testing.T, mdata, chunk []byte, idx uint16) {
		m, err := DecodeManifest(mdata)
		if err != nil || len(m.Chunks) == 0 {
			return
		}
		ci := int(idx) % len(m.Chunks)
		size := m.Chunks[ci].Size
		if size > 4<<20 {
			return // valid but too large to materialise per fuzz input
		}
		// Fit the bytes to the declared size so that every input reaches the tensor decoders.
		data := make([]byte, size)
		copy(data, chunk)
		out := map[string]*loaded{}
		if err := decodeChunk(m, ci, tensorsByChunk(m)[ci], data, out); err != nil {
			checkKind(t, err)
			return
		}
		for _, te := range m.Tensors {
			if te.Chunk != int64(ci) {
				continue
			}
			l := out[te.Name]
			if l == nil {
				t.Fatalf("tensor %q not decoded", te.Name)
			}
			if l.quant != nil {
				if err := l.quant.Validate(); err != nil {
					t.Fatalf("%q: %v", te.Name, err)
				}
				if M, K, err := QuantRows(te.Shape); err != nil || !l.quant.Shape.Equal(core.Shape{M, K}) {
					t.Fatalf("%q: packed %v for shape %v (%v)", te.Name, l.quant.Shape, te.Shape, err)
				}
				continue
			}
			n, _ := numel(te.Shape, MaxChunkBytes)
			if int64(len(l.data)) != n {
				t.Fatalf("%q: %d values for %v", te.Name, len(l.data), te.Shape)
			}
		}
		if err := decodeChunk(m, ci, tensorsByChunk(m)[ci], data[:size/2], out); size > 0 && !errors.Is(err, ErrIntegrity) {
			t.Fatalf("short chunk: err = %v", err)
		}
	})
}
