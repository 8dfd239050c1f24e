// Package weights is webvar's own weights format: a directory holding a msgpack manifest and chunk files
// of bounded size, each with a SHA-256, so that a browser can stream a checkpoint with progress, verify
// every chunk before using it and cache (resume) verified chunks. Official checkpoints are converted once
// with Writer; Load reads a directory through any Source (a local directory, HTTP, the browser's fetch).
//
// See FORMAT.md for the specification.
package weights

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/webvar/webvar/core"
)

const (
	// Magic identifies a manifest; a file without it is not ours, whatever else it contains.
	Magic = "WEBVAR-WEIGHTS"
	// Version is the manifest structure version. Bump it only for a structural change (a change that an
	// older reader would misread); a new optional field or a new Meta/Config key keeps it.
	Version = 1

	// ManifestFile is the manifest's name inside a weights directory.
	ManifestFile = "manifest.msgpack"

	// DefaultChunkBytes is the chunk size Writer aims for when WriterOptions.ChunkBytes is 0: small enough
	// that a browser holds a chunk in memory while hashing it and that a failed download costs little.
	DefaultChunkBytes = 4 << 20
)

// Limits a manifest must respect. They are far above what any real checkpoint needs and exist so that a
// corrupt or hostile manifest is rejected before it makes the reader allocate or loop without bound.
const (
	MaxManifestBytes = 16 << 20 // manifest file size
	MaxChunkBytes    = 1 << 30  // one chunk (a tensor larger than this cannot be stored)
	MaxTensors       = 1 << 16  // entries of Tensors
	MaxChunks        = 1 << 16  // entries of Chunks
	MaxRank          = 8        // dimensions of a tensor
	MaxNameBytes     = 1024     // bytes of a tensor name

	// Structural limits on the msgpack document, checked before decoding it (see checkMsgpack).
	maxMsgpackDepth      = 32
	maxMsgpackContainers = 1 << 18 // maps and arrays in the whole document
	maxMsgpackElements   = 1 << 22 // array elements plus map keys and values in the whole document
	maxMsgpackLen        = 1 << 17 // elements of one map or array
)

// Scheme is how a tensor's values are stored.
type Scheme string

const (
	F32  Scheme = "f32"  // IEEE binary32, 4 bytes per element
	F16  Scheme = "f16"  // IEEE binary16, 2 bytes per element; storage only: decoded to f32
	Int8 Scheme = "int8" // core.QuantHost with core.QuantInt8
	Int4 Scheme = "int4" // core.QuantHost with core.QuantInt4
)

// Valid reports whether s is a known scheme.
func (s Scheme) Valid() bool { return s == F32 || s == F16 || s == Int8 || s == Int4 }

// Quant returns the core quantization scheme of int8/int4, and false for the float schemes.
func (s Scheme) Quant() (core.QuantScheme, bool) {
	switch s {
	case Int8:
		return core.QuantInt8, true
	case Int4:
		return core.QuantInt4, true
	}
	return 0, false
}

// Manifest describes a weights directory. It is the content of ManifestFile.
type Manifest struct {
	Magic   string            `msgpack:"magic"`
	Version int               `msgpack:"version"`
	Family  string            `msgpack:"family"` // "var": transformer and VQVAE in one directory
	Config  map[string]any    `msgpack:"config"` // architecture config, free-form (integers decode as int64/uint64, floats as float64)
	Meta    map[string]string `msgpack:"meta"`   // class names, sampling defaults, provenance...
	Tensors []TensorEntry     `msgpack:"tensors"`
	Chunks  []ChunkEntry      `msgpack:"chunks"`
}

// TensorEntry locates one tensor: its bytes are Chunks[Chunk]'s bytes [Offset, Offset+Length).
type TensorEntry struct {
	Name   string `msgpack:"name"`
	Scheme Scheme `msgpack:"scheme"`
	Shape  []int  `msgpack:"shape"`
	Chunk  int64  `msgpack:"chunk"`
	Offset int64  `msgpack:"offset"`
	Length int64  `msgpack:"length"`
	// Scales is how an int8/int4 tensor's scales are stored: F32 (also when empty, the original layout)
	// or F16. Float tensors leave it empty.
	Scales Scheme `msgpack:"scales,omitempty"`
}

// ChunkEntry is one chunk file with the size and SHA-256 (lowercase hex) of its content.
type ChunkEntry struct {
	File   string `msgpack:"file"`
	Size   int64  `msgpack:"size"`
	SHA256 string `msgpack:"sha256"`
}

// ChunkFileName is the file name of chunk i. Names are fixed by the index, so a manifest cannot point a
// reader at an arbitrary path or URL.
func ChunkFileName(i int) string { return fmt.Sprintf("chunk-%05d.bin", i) }

// Error kinds: every error of this package wraps exactly one of them (test with errors.Is).
var (
	ErrFormat      = errors.New("malformed weights")           // manifest or tensor data violates the format
	ErrUnsupported = errors.New("unsupported weights version") // valid for a newer reader
	ErrIntegrity   = errors.New("weights integrity failure")   // a chunk's size or SHA-256 does not match
	ErrIO          = errors.New("weights I/O error")           // the Source failed
)

// Error is the error type of this package. Chunk and Tensor name the parts at fault when known.
type Error struct {
	Kind   error // ErrFormat, ErrUnsupported, ErrIntegrity or ErrIO
	Chunk  string
	Tensor string
	Msg    string
	Err    error // underlying cause, may be nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("weights: ")
	if e.Kind != nil {
		b.WriteString(e.Kind.Error())
	} else {
		b.WriteString("error")
	}
	if e.Chunk != "" {
		fmt.Fprintf(&b, ": chunk %s", e.Chunk)
	}
	if e.Tensor != "" {
		fmt.Fprintf(&b, ": tensor %q", e.Tensor)
	}
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns Kind and Err, so that errors.Is matches both the kind and the cause.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

func formatErr(chunk, tensor, format string, args ...any) *Error {
	return &Error{Kind: ErrFormat, Chunk: chunk, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}

// EncodeManifest validates m and encodes it. Map keys are sorted so that a conversion is reproducible.
func EncodeManifest(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(m); err != nil {
		return nil, &Error{Kind: ErrFormat, Msg: "encode manifest", Err: err}
	}
	if buf.Len() > MaxManifestBytes {
		return nil, formatErr("", "", "manifest is %d bytes, more than %d", buf.Len(), MaxManifestBytes)
	}
	return buf.Bytes(), nil
}

// DecodeManifest decodes and validates a manifest. The document's structure is checked (depth, counts,
// lengths within the data) before the msgpack library sees it, so that no input makes it allocate more
// than a small multiple of len(data).
func DecodeManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestBytes {
		return nil, formatErr("", "", "manifest is %d bytes, more than %d", len(data), MaxManifestBytes)
	}
	if err := checkMsgpack(data); err != nil {
		return nil, &Error{Kind: ErrFormat, Msg: "manifest", Err: err}
	}
	// Check the magic and version before anything else so that a newer manifest whose structure changed
	// is reported as unsupported rather than as malformed.
	// A map, not a struct with interface fields: msgpack v5.4.1 panics when a repeated key is decoded into
	// an interface field that already holds a value (found by FuzzManifest).
	var head map[string]any
	if err := safeDecode(func() error { return msgpack.Unmarshal(data, &head) }); err != nil {
		return nil, &Error{Kind: ErrFormat, Msg: "manifest is not a msgpack map", Err: err}
	}
	magic, version := head["magic"], head["version"]
	if s, ok := magic.(string); !ok || s != Magic {
		return nil, formatErr("", "", "bad magic %.40q, want %q", fmt.Sprint(magic), Magic)
	}
	switch v := version.(type) {
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64:
		n, _ := toInt64(v)
		if n > Version {
			return nil, &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("manifest version %d, this reader supports up to %d", n, Version)}
		}
	default:
		return nil, formatErr("", "", "version %v is not an integer", version)
	}

	var m Manifest
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	dec.UseLooseInterfaceDecoding(true)
	if err := safeDecode(func() error { return dec.Decode(&m) }); err != nil {
		return nil, &Error{Kind: ErrFormat, Msg: "decode manifest", Err: err}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// safeDecode runs a msgpack decode and turns a panic inside the library into an error. Crafted input has
// made msgpack v5.4.1 panic (see DecodeManifest); whatever else the library does wrong, a malformed
// manifest must come back as ErrFormat, not crash the page or the command.
func safeDecode(decode func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack decoder failed: %v", r)
		}
	}()
	return decode()
}

// ConfigInts returns the integer list config[key] (msgpack decodes config values as any: integers of
// various widths inside []any).
func (m *Manifest) ConfigInts(key string) ([]int, error) {
	raw, ok := m.Config[key]
	if !ok {
		return nil, fmt.Errorf("weights manifest: no %q in config", key)
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("weights manifest: config %q is %T, want a list", key, raw)
	}
	out := make([]int, len(list))
	for i, v := range list {
		n, ok := toInt64(v)
		if !ok || n != int64(int(n)) {
			return nil, fmt.Errorf("weights manifest: config %q entry %v is not an integer", key, v)
		}
		out[i] = int(n)
	}
	return out, nil
}

// ConfigInt reads an integer entry of the config ("classes").
func (m *Manifest) ConfigInt(key string) (int, error) {
	raw, ok := m.Config[key]
	if !ok {
		return 0, fmt.Errorf("weights manifest: no %q in config", key)
	}
	n, ok := toInt64(raw)
	if !ok || n != int64(int(n)) {
		return 0, fmt.Errorf("weights manifest: config %q is %v, not an integer", key, raw)
	}
	return int(n), nil
}

// ConfigFloat reads a number of the config ("vae_scale"), integer or float.
func (m *Manifest) ConfigFloat(key string) (float64, error) {
	raw, ok := m.Config[key]
	if !ok {
		return 0, fmt.Errorf("weights manifest: no %q in config", key)
	}
	switch f := raw.(type) {
	case float32:
		return float64(f), nil
	case float64:
		return f, nil
	}
	if n, ok := toInt64(raw); ok {
		return float64(n), nil
	}
	return 0, fmt.Errorf("weights manifest: config %q is %v, not a number", key, raw)
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int8:
		return int64(n), true
	case int16:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		if n > math.MaxInt64 {
			return math.MaxInt64, true
		}
		return int64(n), true
	}
	return 0, false
}

// Validate checks everything a reader relies on before allocating or reading a chunk: magic, version,
// counts, names, schemes, shapes (and that the byte length matches them exactly), chunk references,
// offsets and lengths within their chunk, and that no two tensors overlap. It returns an *Error.
func (m *Manifest) Validate() error {
	if m.Magic != Magic {
		return formatErr("", "", "bad magic %.40q, want %q", m.Magic, Magic)
	}
	if m.Version > Version {
		return &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("manifest version %d, this reader supports up to %d", m.Version, Version)}
	}
	if m.Version < 1 {
		return formatErr("", "", "version %d, want >= 1", m.Version)
	}
	if m.Family == "" {
		return formatErr("", "", "empty family")
	}
	if len(m.Chunks) > MaxChunks {
		return formatErr("", "", "%d chunks, more than %d", len(m.Chunks), MaxChunks)
	}
	if len(m.Tensors) > MaxTensors {
		return formatErr("", "", "%d tensors, more than %d", len(m.Tensors), MaxTensors)
	}
	for i, c := range m.Chunks {
		if want := ChunkFileName(i); c.File != want {
			return formatErr(fmt.Sprintf("#%d", i), "", "file name %.80q, want %q", c.File, want)
		}
		if c.Size < 0 || c.Size > MaxChunkBytes {
			return formatErr(c.File, "", "size %d outside [0, %d]", c.Size, MaxChunkBytes)
		}
		if len(c.SHA256) != 64 || !isLowerHex(c.SHA256) {
			return formatErr(c.File, "", "sha256 %.80q is not 64 lowercase hex digits", c.SHA256)
		}
	}

	names := make(map[string]bool, len(m.Tensors))
	for _, t := range m.Tensors {
		if err := validName(t.Name); err != nil {
			return formatErr("", t.Name, "%v", err)
		}
		if names[t.Name] {
			return formatErr("", t.Name, "duplicate tensor name")
		}
		names[t.Name] = true
		if t.Chunk < 0 || t.Chunk >= int64(len(m.Chunks)) {
			return formatErr("", t.Name, "chunk index %d out of range [0, %d)", t.Chunk, len(m.Chunks))
		}
		c := m.Chunks[t.Chunk]
		if t.Scales != "" {
			if _, q := t.Scheme.Quant(); !q || (t.Scales != F32 && t.Scales != F16) {
				return formatErr(c.File, t.Name, "scales %.20q for scheme %.20q (want f32 or f16, for int8/int4 only)", string(t.Scales), string(t.Scheme))
			}
		}
		want, err := QuantPayloadBytes(t.Scheme, t.Scales, t.Shape)
		if err != nil {
			return formatErr(c.File, t.Name, "%v", err)
		}
		if t.Length != want {
			scales := ""
			if _, q := t.Scheme.Quant(); q {
				scales = " with " + string(F32) + " scales"
				if t.Scales == F16 {
					scales = " with " + string(F16) + " scales"
				}
			}
			return formatErr(c.File, t.Name, "length %d, want %d for %s %v%s", t.Length, want, t.Scheme, t.Shape, scales)
		}
		// Written as two comparisons so that Offset+Length cannot overflow.
		if t.Offset < 0 || t.Offset > c.Size || t.Length > c.Size-t.Offset {
			return formatErr(c.File, t.Name, "bytes [%d, +%d) outside the chunk's %d bytes", t.Offset, t.Length, c.Size)
		}
	}

	// Overlap: sort each chunk's tensors by offset and compare neighbours. Empty tensors occupy nothing.
	byChunk := tensorsByChunk(m)
	for ci, idx := range byChunk {
		sorted := make([]int, 0, len(idx))
		for _, i := range idx {
			if m.Tensors[i].Length > 0 {
				sorted = append(sorted, i)
			}
		}
		sort.Slice(sorted, func(a, b int) bool { return m.Tensors[sorted[a]].Offset < m.Tensors[sorted[b]].Offset })
		for k := 1; k < len(sorted); k++ {
			prev, cur := m.Tensors[sorted[k-1]], m.Tensors[sorted[k]]
			if prev.Offset+prev.Length > cur.Offset {
				return formatErr(m.Chunks[ci].File, cur.Name, "overlaps tensor %q", prev.Name)
			}
		}
	}
	return nil
}

// tensorsByChunk lists the indices of each chunk's tensors, in manifest order. m must have valid chunk
// indices.
func tensorsByChunk(m *Manifest) [][]int {
	out := make([][]int, len(m.Chunks))
	for i, t := range m.Tensors {
		out[t.Chunk] = append(out[t.Chunk], i)
	}
	return out
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func validName(name string) error {
	switch {
	case name == "":
		return errors.New("empty tensor name")
	case len(name) > MaxNameBytes:
		return fmt.Errorf("tensor name of %d bytes, more than %d", len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return errors.New("tensor name is not valid UTF-8")
	}
	return nil
}

// numel returns the element count of shape, checking rank and signs, and that the count stays within
// limit (the count of a shape with a zero dimension is 0 whatever the other dimensions).
func numel(shape []int, limit int64) (int64, error) {
	if len(shape) > MaxRank {
		return 0, fmt.Errorf("rank %d, more than %d", len(shape), MaxRank)
	}
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in %v", shape)
		}
		if d > MaxChunkBytes {
			return 0, fmt.Errorf("dimension %d in %v too large", d, shape)
		}
		if d == 0 {
			n = 0
		}
	}
	if n == 0 {
		return 0, nil
	}
	for _, d := range shape {
		if int64(d) > limit/n {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, limit)
		}
		n *= int64(d)
	}
	return n, nil
}

// QuantRows is the [M, K] matrix a quantized tensor of the given shape is stored as: M = shape[0] rows of
// K = shape[1]·shape[2]·… values (a Linear weight [M, K] as it is; a conv weight [Co, Ci, kh, kw] as
// [Co, Ci·kh·kw], its im2col row order). It fails for rank < 2 and for shapes beyond the format's limits.
func QuantRows(shape []int) (M, K int, err error) {
	if len(shape) < 2 {
		return 0, 0, fmt.Errorf("quantized tensor of shape %v, want rank >= 2 ([M, K] or [M, d1, d2, ...])", shape)
	}
	if _, err := numel(shape, MaxChunkBytes); err != nil {
		return 0, 0, err
	}
	// Checked on its own as well: with M = 0 the whole shape has no elements whatever K is.
	k, err := numel(shape[1:], MaxChunkBytes)
	if err != nil {
		return 0, 0, err
	}
	K = int(k)
	return shape[0], K, nil
}

// PayloadBytes is the exact byte length of a tensor of the given scheme and shape (FORMAT.md, Tensor
// payloads; quantized with float32 scales), or an error if the scheme is unknown, the shape is invalid
// for it, or the length exceeds MaxChunkBytes. Converters use it to predict a directory's size without
// writing it.
func PayloadBytes(s Scheme, shape []int) (int64, error) { return QuantPayloadBytes(s, F32, shape) }

// QuantPayloadBytes is PayloadBytes with int8/int4 scales stored as scales: F32 (or empty) or F16. The
// float schemes ignore it.
func QuantPayloadBytes(s, scales Scheme, shape []int) (int64, error) {
	var n int64
	switch s {
	case F32, F16:
		el, err := numel(shape, MaxChunkBytes)
		if err != nil {
			return 0, err
		}
		n = el * 4
		if s == F16 {
			n = el * 2
		}
	case Int8, Int4:
		M, K, err := QuantRows(shape)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", s, err)
		}
		qs, _ := s.Quant()
		// M and K are at most MaxChunkBytes (2^30), so these products fit in int64.
		scaleBytes := int64(4)
		switch scales {
		case F16:
			scaleBytes = 2
		case F32, "":
		default:
			return 0, fmt.Errorf("%s: unknown scales scheme %.20q (want f32 or f16)", s, string(scales))
		}
		n = int64(M) * (int64(qs.WordsPerRow(K))*4 + int64(core.QuantBlocks(K))*scaleBytes)
	default:
		return 0, fmt.Errorf("unknown scheme %.20q", string(s))
	}
	if n > MaxChunkBytes {
		return 0, fmt.Errorf("%s %v needs %d bytes, more than %d", s, shape, n, MaxChunkBytes)
	}
	return n, nil
}

// checkMsgpack checks that data is exactly one msgpack value within the structural limits: nesting depth,
// number of containers and elements, every length within the remaining bytes, and no extension types
// (the format uses none). The msgpack library allocates a slice or map for a declared length before
// reading its elements, so without this a few bytes could make it allocate gigabytes, and deep nesting
// could exhaust the stack.
func checkMsgpack(data []byte) error {
	s := msgpackScan{data: data}
	if err := s.value(0); err != nil {
		return err
	}
	if s.pos != len(data) {
		return fmt.Errorf("%d trailing bytes after the msgpack value", len(data)-s.pos)
	}
	return nil
}

type msgpackScan struct {
	data                 []byte
	pos                  int
	containers, elements int
}

var errMsgpackShort = errors.New("msgpack value truncated")

// uint reads an n-byte big-endian length or skips an n-byte number.
func (s *msgpackScan) uint(n int) (uint64, error) {
	if len(s.data)-s.pos < n {
		return 0, errMsgpackShort
	}
	var v uint64
	for _, b := range s.data[s.pos : s.pos+n] {
		v = v<<8 | uint64(b)
	}
	s.pos += n
	return v, nil
}

func (s *msgpackScan) skip(n uint64) error {
	if uint64(len(s.data)-s.pos) < n {
		return errMsgpackShort
	}
	s.pos += int(n)
	return nil
}

func (s *msgpackScan) value(depth int) error {
	if depth > maxMsgpackDepth {
		return fmt.Errorf("msgpack nesting deeper than %d", maxMsgpackDepth)
	}
	if s.pos >= len(s.data) {
		return errMsgpackShort
	}
	c := s.data[s.pos]
	s.pos++
	switch {
	case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		return nil
	case c <= 0x8f: // fixmap
		return s.container(uint64(c&0x0f), true, depth)
	case c <= 0x9f: // fixarray
		return s.container(uint64(c&0x0f), false, depth)
	case c <= 0xbf: // fixstr
		return s.skip(uint64(c & 0x1f))
	}
	switch c {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return nil
	case 0xc4, 0xd9: // bin8, str8
		return s.lenThenSkip(1)
	case 0xc5, 0xda: // bin16, str16
		return s.lenThenSkip(2)
	case 0xc6, 0xdb: // bin32, str32
		return s.lenThenSkip(4)
	case 0xca: // float32
		return s.skip(4)
	case 0xcb: // float64
		return s.skip(8)
	case 0xcc, 0xd0: // uint8, int8
		return s.skip(1)
	case 0xcd, 0xd1:
		return s.skip(2)
	case 0xce, 0xd2:
		return s.skip(4)
	case 0xcf, 0xd3:
		return s.skip(8)
	case 0xdc, 0xde: // array16, map16
		n, err := s.uint(2)
		if err != nil {
			return err
		}
		return s.container(n, c == 0xde, depth)
	case 0xdd, 0xdf: // array32, map32
		n, err := s.uint(4)
		if err != nil {
			return err
		}
		return s.container(n, c == 0xdf, depth)
	}
	// 0xc1 (never used) and the extension types 0xc7-0xc9, 0xd4-0xd8.
	return fmt.Errorf("msgpack type byte 0x%02x not allowed", c)
}

func (s *msgpackScan) lenThenSkip(n int) error {
	l, err := s.uint(n)
	if err != nil {
		return err
	}
	return s.skip(l)
}

func (s *msgpackScan) container(n uint64, isMap bool, depth int) error {
	if isMap {
		n *= 2 // n < 2^32, no overflow
	}
	// Every element takes at least one byte: a length beyond the remaining bytes is a lie.
	if n > maxMsgpackLen || n > uint64(len(s.data)-s.pos) {
		return fmt.Errorf("msgpack container of %d elements with %d bytes left", n, len(s.data)-s.pos)
	}
	s.containers++
	s.elements += int(n)
	if s.containers > maxMsgpackContainers || s.elements > maxMsgpackElements {
		return errors.New("msgpack document has too many containers or elements")
	}
	for range n {
		if err := s.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}
