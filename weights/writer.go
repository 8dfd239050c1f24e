package weights

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/webvar/webvar/core"
)

// WriterOptions configures a Writer.
type WriterOptions struct {
	// ChunkBytes is the size a chunk may reach before the next tensor starts a new one; 0 means
	// DefaultChunkBytes. A tensor larger than ChunkBytes gets a chunk of its own.
	ChunkBytes int64
}

// Writer writes a weights directory. Tensors are streamed into the current chunk file as they are added,
// hashed on the way, so a conversion never holds more than one tensor's encoding buffer. Files are written
// under temporary names and renamed when complete, and the manifest is written last, so an interrupted
// conversion leaves a directory without a manifest: never one that looks valid.
//
// A Writer is not safe for concurrent use. A refused tensor (bad name, shape or data: ErrFormat) writes
// nothing and the Writer stays usable, so a converter may retry it another way (f32 after an f16
// overflow); after an I/O failure every call returns that error.
type Writer struct {
	dir        string
	chunkBytes int64

	tensors []TensorEntry
	chunks  []ChunkEntry
	names   map[string]bool

	// The chunk being written; f is nil between chunks.
	f      *os.File
	buf    *bufio.Writer
	sum    hash.Hash
	out    io.Writer // buf and sum together
	size   int64
	tmp    string
	encBuf []byte

	err    error // sticky: the first failure
	closed bool
}

// NewWriter starts a weights directory in dir, creating it if needed. An existing manifest there is
// removed first, so that stale chunks are never paired with it if this conversion is interrupted.
func NewWriter(dir string, opt WriterOptions) (*Writer, error) {
	cb := opt.ChunkBytes
	if cb == 0 {
		cb = DefaultChunkBytes
	}
	if cb < 0 || cb > MaxChunkBytes {
		return nil, formatErr("", "", "chunk size %d outside (0, %d]", opt.ChunkBytes, MaxChunkBytes)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &Error{Kind: ErrIO, Msg: "create directory", Err: err}
	}
	if err := os.Remove(filepath.Join(dir, ManifestFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, &Error{Kind: ErrIO, Msg: "remove old manifest", Err: err}
	}
	return &Writer{dir: dir, chunkBytes: cb, names: map[string]bool{}}, nil
}

// AddF32 appends a float tensor stored as s (F32, or F16 which rounds to nearest even; a finite value
// beyond half's range is an error rather than a silent Inf).
func (w *Writer) AddF32(name string, t core.HostTensor, s Scheme) error {
	if s != F32 && s != F16 {
		return formatErr("", name, "AddF32 with scheme %q, want %q or %q (AddQuant for quantized)", s, F32, F16)
	}
	n, err := numel(t.Shape, MaxChunkBytes)
	if err != nil {
		return formatErr("", name, "%v", err)
	}
	if int64(len(t.Data)) != n {
		return formatErr("", name, "%d values for shape %v", len(t.Data), t.Shape)
	}
	if s == F16 {
		// Checked before writing anything so that a refused tensor leaves the chunk consistent.
		for i, v := range t.Data {
			if _, ok := core.F32ToF16(v); !ok {
				return formatErr("", name, "value %g at index %d overflows f16", v, i)
			}
		}
	}
	return w.add(name, s, t.Shape, func() error {
		if s == F32 {
			return w.writeF32(t.Data)
		}
		return w.writeF16(t.Data)
	})
}

// AddQuant appends a quantized [M, K] weight in the core.QuantHost layout. q must be valid.
func (w *Writer) AddQuant(name string, q core.QuantHost) error {
	return w.AddQuantAs(name, q, q.Shape)
}

// AddQuantAs appends q as a tensor of the given shape, of rank >= 2, whose rows (QuantRows) are q's
// [M, K]: a conv weight [Co, Ci, kh, kw] quantized as [Co, Ci·kh·kw]. q must be valid. Readers serve
// it dequantized in that shape (Model.Load). Scales that are all exactly float16 values
// (core.QuantizeOptions.F16Scales makes them so) are stored in 2 bytes each, otherwise in 4.
func (w *Writer) AddQuantAs(name string, q core.QuantHost, shape core.Shape) error {
	var s Scheme
	switch q.Scheme {
	case core.QuantInt8:
		s = Int8
	case core.QuantInt4:
		s = Int4
	}
	if err := q.Validate(); err != nil {
		return &Error{Kind: ErrFormat, Tensor: name, Err: err}
	}
	M, K, err := QuantRows(shape)
	if err != nil {
		return formatErr("", name, "%v", err)
	}
	if M != q.Shape[0] || K != q.Shape[1] {
		return formatErr("", name, "shape %v is stored as [%d, %d], not as the quantized %v", shape, M, K, q.Shape)
	}
	scales := ScalesFor(q)
	return w.addScales(name, s, scales, shape, func() error {
		if err := w.writeU32(len(q.Codes), func(i int) uint32 { return q.Codes[i] }); err != nil {
			return err
		}
		if scales == F16 {
			return w.writeF16(q.Scales) // exact: checked above
		}
		return w.writeF32(q.Scales)
	})
}

// ScalesFor is how AddQuant and AddQuantAs store q's scales: F16 when every one is exactly a float16
// value (core.QuantizeOptions.F16Scales makes them so), else F32.
func ScalesFor(q core.QuantHost) Scheme {
	if q.F16Scales() {
		return F16
	}
	return F32
}

// add checks the name and the limits, starts a new chunk if the tensor would overflow the current one,
// and writes the payload, checking that exactly the declared length was written.
func (w *Writer) add(name string, s Scheme, shape core.Shape, write func() error) error {
	return w.addScales(name, s, "", shape, write)
}

// addScales is add for a quantized tensor whose scales are stored as scales (F32 or F16; "" for a float
// tensor). F32 scales are recorded as an absent key, the original layout, so older readers still read
// such directories.
func (w *Writer) addScales(name string, s, scales Scheme, shape core.Shape, write func() error) error {
	if scales == F32 {
		scales = ""
	}
	if err := w.usable(); err != nil {
		return err
	}
	if err := validName(name); err != nil {
		return formatErr("", name, "%v", err)
	}
	if w.names[name] {
		return formatErr("", name, "duplicate tensor name")
	}
	if len(w.tensors) >= MaxTensors {
		return formatErr("", name, "more than %d tensors", MaxTensors)
	}
	length, err := QuantPayloadBytes(s, scales, shape)
	if err != nil {
		return formatErr("", name, "%v", err)
	}
	if w.f != nil && w.size > 0 && w.size+length > w.chunkBytes {
		if err := w.finishChunk(); err != nil {
			return err
		}
	}
	if w.f == nil {
		if err := w.startChunk(); err != nil {
			return err
		}
	}
	start := w.size
	if w.encBuf == nil {
		w.encBuf = make([]byte, 0, 64<<10)
	}
	if err := write(); err != nil {
		return w.fail(&Error{Kind: ErrIO, Chunk: ChunkFileName(len(w.chunks)), Tensor: name, Msg: "write", Err: err})
	}
	if got := w.size - start; got != length {
		// A bug in the encoders, not bad input: refuse to write a manifest that would not match.
		return w.fail(formatErr(ChunkFileName(len(w.chunks)), name, "wrote %d bytes, want %d", got, length))
	}
	w.names[name] = true
	w.tensors = append(w.tensors, TensorEntry{
		Name: name, Scheme: s, Shape: append([]int{}, shape...),
		Chunk: int64(len(w.chunks)), Offset: start, Length: length, Scales: scales,
	})
	return nil
}

// countingWriter counts what reaches the chunk so that offsets come from the bytes actually written.
type countingWriter struct {
	w io.Writer
	n *int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	*c.n += int64(n)
	return n, err
}

func (w *Writer) startChunk() error {
	if len(w.chunks) >= MaxChunks {
		return w.fail(formatErr("", "", "more than %d chunks", MaxChunks))
	}
	name := ChunkFileName(len(w.chunks))
	w.tmp = filepath.Join(w.dir, name+".tmp")
	f, err := os.Create(w.tmp)
	if err != nil {
		return w.fail(&Error{Kind: ErrIO, Chunk: name, Msg: "create", Err: err})
	}
	w.f, w.buf, w.sum, w.size = f, bufio.NewWriterSize(f, 256<<10), sha256.New(), 0
	w.out = countingWriter{io.MultiWriter(w.buf, w.sum), &w.size}
	return nil
}

// finishChunk flushes and syncs the chunk before renaming it, so that a renamed chunk is complete.
func (w *Writer) finishChunk() error {
	name := ChunkFileName(len(w.chunks))
	err := w.buf.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err == nil {
		err = os.Rename(w.tmp, filepath.Join(w.dir, name))
	}
	if err != nil {
		os.Remove(w.tmp)
		return w.fail(&Error{Kind: ErrIO, Chunk: name, Msg: "finish chunk", Err: err})
	}
	w.chunks = append(w.chunks, ChunkEntry{File: name, Size: w.size, SHA256: hex.EncodeToString(w.sum.Sum(nil))})
	return nil
}

func (w *Writer) writeF32(data []float32) error {
	return w.writeU32(len(data), func(i int) uint32 { return math.Float32bits(data[i]) })
}

// writeU32 writes n little-endian words through the encoding buffer.
func (w *Writer) writeU32(n int, at func(int) uint32) error {
	b := w.encBuf[:0]
	for i := range n {
		b = binary.LittleEndian.AppendUint32(b, at(i))
		if len(b) > cap(w.encBuf)-4 {
			if _, err := w.out.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	_, err := w.out.Write(b)
	return err
}

func (w *Writer) writeF16(data []float32) error {
	b := w.encBuf[:0]
	for _, v := range data {
		h, _ := core.F32ToF16(v)
		b = binary.LittleEndian.AppendUint16(b, h)
		if len(b) > cap(w.encBuf)-2 {
			if _, err := w.out.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	_, err := w.out.Write(b)
	return err
}

// Close finishes the last chunk, removes chunk files left by an earlier conversion into the same
// directory, and writes the manifest (validated first). It returns the manifest written.
func (w *Writer) Close(family string, config map[string]any, meta map[string]string) (*Manifest, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	if w.f != nil {
		if err := w.finishChunk(); err != nil {
			return nil, err
		}
	}
	m := &Manifest{
		Magic: Magic, Version: Version, Family: family, Config: config, Meta: meta,
		Tensors: w.tensors, Chunks: w.chunks,
	}
	data, err := EncodeManifest(m)
	if err != nil {
		return nil, w.fail(err)
	}
	if err := w.removeStale(); err != nil {
		return nil, w.fail(err)
	}
	if err := writeManifest(w.dir, data); err != nil {
		return nil, w.fail(err)
	}
	w.closed = true
	return m, nil
}

// writeManifest writes the encoded manifest of dir under NAME.tmp, syncs it and renames it, so that a
// reader never sees a partial manifest.
func writeManifest(dir string, data []byte) error {
	tmp := filepath.Join(dir, ManifestFile+".tmp")
	if err := writeSynced(tmp, data); err != nil {
		os.Remove(tmp)
		return &Error{Kind: ErrIO, Chunk: ManifestFile, Msg: "write", Err: err}
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		os.Remove(tmp)
		return &Error{Kind: ErrIO, Chunk: ManifestFile, Msg: "rename", Err: err}
	}
	// Best effort: make the renames durable. Not every platform can sync a directory.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// UpdateMeta adds or replaces the meta entries set in the manifest of the weights directory dir and
// rewrites it (validated, then written as Close writes it), leaving the chunks and the tensor table
// untouched: metadata computed from a converted model, such as its preview map, is added without
// converting it again. It returns the new manifest.
func UpdateMeta(dir string, set map[string]string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Kind: ErrIO, Chunk: ManifestFile, Msg: "read", Err: err}
	}
	m, err := DecodeManifest(data)
	if err != nil {
		return nil, err
	}
	if m.Meta == nil {
		m.Meta = map[string]string{}
	}
	for k, v := range set {
		m.Meta[k] = v
	}
	if data, err = EncodeManifest(m); err != nil {
		return nil, err
	}
	if err := writeManifest(dir, data); err != nil {
		return nil, err
	}
	return m, nil
}

// Abort stops the conversion and removes the chunk being written. Finished chunks stay (there is no
// manifest, so they do not form a valid directory); a new Writer on the same directory replaces them.
func (w *Writer) Abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.f == nil {
		return nil
	}
	w.f.Close()
	w.f = nil
	if err := os.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &Error{Kind: ErrIO, Msg: "remove partial chunk", Err: err}
	}
	return nil
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return &Error{Kind: ErrIO, Msg: "writer is closed"}
	}
	return nil
}

// fail records the first error and abandons the chunk being written: after an error the directory is
// never completed, so nothing half-written must look finished.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
		if w.f != nil {
			w.f.Close()
			w.f = nil
			os.Remove(w.tmp)
		}
	}
	return w.err
}

// removeStale deletes chunk files (and temporary files) of ours that the new manifest does not list.
func (w *Writer) removeStale() error {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return &Error{Kind: ErrIO, Msg: "list directory", Err: err}
	}
	for _, e := range entries {
		name := e.Name()
		base := strings.TrimSuffix(name, ".tmp")
		i, ok := chunkIndex(base)
		if !ok || (base == name && i < len(w.chunks)) {
			continue
		}
		if err := os.Remove(filepath.Join(w.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return &Error{Kind: ErrIO, Chunk: name, Msg: "remove stale chunk", Err: err}
		}
	}
	return nil
}

// chunkIndex parses a name made by ChunkFileName.
func chunkIndex(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "chunk-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".bin")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || ChunkFileName(i) != name {
		return 0, false
	}
	return i, true
}

func writeSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
