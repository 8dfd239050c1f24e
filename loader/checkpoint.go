// Package loader reads PyTorch checkpoints, the torch.save zip format (.pth) and safetensors, without
// executing anything in them and without trusting any size, offset or count they contain.
//
// Opening a checkpoint parses only its directory (zip central directory and pickle, or the safetensors JSON
// header); tensor data is read lazily, one tensor per call, so a multi-gigabyte checkpoint never has to fit in
// memory. Every allocation made while parsing is bounded by the size of the file.
package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/webvar/webvar/core"
)

// DType is a tensor element type, spelled as in safetensors.
type DType string

const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	F64  DType = "F64"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

// itemSize is the element size in bytes, 0 for a dtype this package does not know.
func (d DType) itemSize() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, Bool:
		return 1
	}
	return 0
}

func (d DType) isInteger() bool {
	switch d {
	case I64, I32, I16, I8, U8, Bool:
		return true
	}
	return false
}

// TensorInfo describes one tensor of a checkpoint. Shape is empty for a scalar.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
}

// Sentinel kinds of *Error; test with errors.Is.
var (
	// ErrFormat: the file is malformed, truncated or corrupted.
	ErrFormat = errors.New("malformed checkpoint")
	// ErrUnsafe: the pickle references a global or opcode outside the allow-list.
	ErrUnsafe = errors.New("unsafe pickle")
	// ErrUnsupported: the file is valid but uses something this package does not read.
	ErrUnsupported = errors.New("unsupported checkpoint")
	// ErrNotFound: the checkpoint has no tensor of that name.
	ErrNotFound = errors.New("tensor not found")
)

// Error is the error type of this package. Kind is one of the sentinels (nil for a plain I/O error), Err the
// underlying cause if any; errors.Is and errors.As see both.
type Error struct {
	Kind   error
	File   string
	Tensor string
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("loader")
	if e.File != "" {
		b.WriteString(": ")
		b.WriteString(e.File)
	}
	if e.Tensor != "" {
		fmt.Fprintf(&b, ": tensor %q", printable(e.Tensor))
	}
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(e.Kind.Error())
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

// Unwrap returns Kind and Err (whichever are set), so errors.Is matches the sentinel and the cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// withFile fills in the file name of an *Error created by code that does not know it.
func withFile(err error, file string) error {
	var e *Error
	if errors.As(err, &e) && e.File == "" {
		e.File = file
	}
	return err
}

// storage is a run of little-endian elements in the file: a torch storage (zip entry data/<key>) or the
// byte range of one safetensors tensor.
type storage struct {
	key   string
	dtype DType
	numel int64
	off   int64 // absolute offset of the first byte, for data stored uncompressed
	// compressed is set for a deflated zip entry; its bytes have to be inflated from the start to be read.
	compressed interface {
		Open() (io.ReadCloser, error)
	}
	crc uint32 // CRC-32 of the whole storage as recorded by the zip, 0 when unknown
}

func (s *storage) nbytes() int64 { return s.numel * int64(s.dtype.itemSize()) }

// tensor is a strided view of a storage that has been checked to lie inside it.
type tensor struct {
	info       TensorInfo
	st         *storage
	offset     int64   // storage element of index (0, ..., 0)
	stride     []int64 // in elements; 0 for dims of size 1, whose stride never matters
	numel      int64
	last       int64 // highest storage element the view touches (meaningless when numel == 0)
	contiguous bool  // row-major and dense, so the elements are one run [offset, offset+numel)
}

// Checkpoint is an opened .pth (torch zip) or .safetensors file. Tensor data is read lazily, tensor by tensor
// (a VAR-d30 checkpoint is 8 GB: never read the whole file into memory). A Checkpoint may be read from several
// goroutines at once.
type Checkpoint struct {
	name     string
	format   string
	r        io.ReaderAt
	size     int64
	closer   io.Closer
	tensors  []*tensor
	byName   map[string]*tensor
	metadata map[string]string
}

// Open opens a checkpoint file. The format is sniffed from the first bytes, not from the extension.
func Open(path string) (*Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "open", Err: err}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &Error{File: path, Msg: "stat", Err: err}
	}
	c, err := OpenReaderAt(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	c.closer = f
	return c, nil
}

// legacyMagic is how a pre-1.6 torch.save file starts: protocol 2, then LONG1 with torch's magic number
// 0x1950a86a20f9469cfc6c.
var legacyMagic = []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

// OpenReaderAt opens a checkpoint of size bytes readable from r; name is only used in error messages. r must
// stay readable until the Checkpoint is no longer used; Close does not close it.
func OpenReaderAt(r io.ReaderAt, size int64, name string) (*Checkpoint, error) {
	return openReaderAt(r, size, name, "")
}

// OpenStateDict is Open for a training checkpoint that nests several state dicts (RQ-Transformer's
// {'state_dict': sd, 'state_dict_ema': ema, 'optimizer': ...}): it reads the one under key instead of the
// first of the names Open tries.
func OpenStateDict(path, key string) (*Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "open", Err: err}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &Error{File: path, Msg: "stat", Err: err}
	}
	c, err := openReaderAt(f, st.Size(), path, key)
	if err != nil {
		f.Close()
		return nil, err
	}
	c.closer = f
	return c, nil
}

func openReaderAt(r io.ReaderAt, size int64, name, key string) (*Checkpoint, error) {
	if r == nil || size < 0 {
		return nil, &Error{Kind: ErrFormat, File: name, Msg: "no data"}
	}
	head := make([]byte, min(size, 16))
	if err := readFull(r, head, 0); err != nil {
		return nil, &Error{Kind: ErrFormat, File: name, Msg: "reading the file header", Err: err}
	}
	var c *Checkpoint
	var err error
	switch {
	case len(head) >= 4 && (string(head[:4]) == "PK\x03\x04" || string(head[:4]) == "PK\x05\x06"):
		c, err = openPTH(r, size, key)
	case len(head) >= len(legacyMagic) && string(head[:len(legacyMagic)]) == string(legacyMagic):
		err = &Error{Kind: ErrUnsupported, Msg: "legacy torch format: re-save with torch>=1.6"}
	case len(head) >= 9 && head[8] == '{':
		c, err = openSafetensors(r, size)
	case len(head) >= 2 && head[0] == 0x80 && head[1] <= 5:
		err = &Error{Kind: ErrUnsupported, Msg: "a bare pickle, not a torch.save zip archive: re-save with torch>=1.6"}
	default:
		err = &Error{Kind: ErrFormat, Msg: "neither a torch zip archive (.pth) nor safetensors"}
	}
	if err != nil {
		return nil, withFile(err, name)
	}
	c.name, c.r, c.size = name, r, size
	c.byName = make(map[string]*tensor, len(c.tensors))
	for _, t := range c.tensors {
		c.byName[t.info.Name] = t
	}
	return c, nil
}

// readFull reads len(buf) bytes at off. io.ReaderAt may report io.EOF together with a full read.
func readFull(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Format returns "pth" or "safetensors".
func (c *Checkpoint) Format() string { return c.format }

// Tensors lists the tensors in file order (pickle order for .pth, data order for safetensors).
func (c *Checkpoint) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(c.tensors))
	for i, t := range c.tensors {
		out[i] = t.info
		out[i].Shape = slices.Clone(t.info.Shape)
	}
	return out
}

// Info describes the named tensor.
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	t, ok := c.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	info := t.info
	info.Shape = slices.Clone(t.info.Shape)
	return info, true
}

// Metadata returns the safetensors __metadata__ map (nil for .pth, which has none).
func (c *Checkpoint) Metadata() map[string]string {
	if c.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(c.metadata))
	for k, v := range c.metadata {
		m[k] = v
	}
	return m
}

// Close releases the file opened by Open. It does not close a reader passed to OpenReaderAt.
func (c *Checkpoint) Close() error {
	if c.closer == nil {
		return nil
	}
	err := c.closer.Close()
	c.closer = nil
	return err
}

func (c *Checkpoint) lookup(name string) (*tensor, error) {
	t, ok := c.byName[name]
	if !ok {
		return nil, &Error{Kind: ErrNotFound, File: c.name, Tensor: name}
	}
	// The output holds numel values of up to 8 bytes; on a 32-bit platform that may not be addressable.
	if t.numel > int64(math.MaxInt/8) {
		return nil, &Error{Kind: ErrUnsupported, File: c.name, Tensor: name, Msg: "tensor too large for this platform"}
	}
	return t, nil
}

// Float32 reads a tensor as float32 in row-major order, converting from its dtype (F16, BF16 and F64 are
// rounded to nearest, integers converted, bools are 0 or 1).
func (c *Checkpoint) Float32(name string) ([]float32, error) {
	t, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	return readElements(c, t, decodeF32)
}

// Float64 reads an F64 tensor exactly (float64 tables such as a diffusion schedule's); other dtypes are
// an ErrUnsupported error.
func (c *Checkpoint) Float64(name string) ([]float64, error) {
	t, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	if t.info.DType != F64 {
		return nil, &Error{Kind: ErrUnsupported, File: c.name, Tensor: name,
			Msg: fmt.Sprintf("Float64 needs an F64 tensor, this one is %s", t.info.DType)}
	}
	return readElements(c, t, func(dst []float64, src []byte, _ DType) {
		for i := range dst {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:]))
		}
	})
}

// Int64 reads an integer (or bool) tensor as int64 in row-major order.
func (c *Checkpoint) Int64(name string) ([]int64, error) {
	t, err := c.lookup(name)
	if err != nil {
		return nil, err
	}
	if !t.info.DType.isInteger() {
		return nil, &Error{Kind: ErrUnsupported, File: c.name, Tensor: name,
			Msg: fmt.Sprintf("Int64 needs an integer tensor, this one is %s", t.info.DType)}
	}
	return readElements(c, t, decodeInts[int64])
}

// readElements reads all of t's elements in row-major order into a new []T: decode converts each run
// of them (len(dst) values from src) from t's dtype.
func readElements[T any](c *Checkpoint, t *tensor, decode func(dst []T, src []byte, dt DType)) ([]T, error) {
	out := make([]T, t.numel)
	is := t.info.DType.itemSize()
	err := c.elements(t, func(first int, b []byte) {
		decode(out[first:first+len(b)/is], b, t.info.DType)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Host reads a tensor as a float32 core.HostTensor.
func (c *Checkpoint) Host(name string) (core.HostTensor, error) {
	data, err := c.Float32(name)
	if err != nil {
		return core.HostTensor{}, err
	}
	return core.HostTensor{Shape: core.Shape(slices.Clone(c.byName[name].info.Shape)), Data: data}, nil
}

// chunkBytes is how much of a contiguous tensor is read at a time: large enough for efficient I/O, small
// enough that converting an 8 GB checkpoint does not need a second copy of each tensor in raw bytes.
const chunkBytes = 4 << 20

// elements delivers the tensor's elements in row-major order as raw little-endian bytes: fn(first, b) gets
// whole elements starting at output element first.
func (c *Checkpoint) elements(t *tensor, fn func(first int, b []byte)) error {
	if t.numel == 0 {
		return nil
	}
	is := int64(t.info.DType.itemSize())
	st := t.st
	var mem []byte // the whole storage, when it had to be inflated
	if st.compressed != nil {
		var err error
		if mem, err = c.inflate(t); err != nil {
			return err
		}
	}
	if t.contiguous {
		lo, hi := t.offset*is, (t.offset+t.numel)*is
		if mem != nil {
			fn(0, mem[lo:hi])
			return nil
		}
		// The zip CRC covers the whole storage, so it can only be checked when this view reads all of it.
		var crc uint32
		checkCRC := st.crc != 0 && lo == 0 && hi == st.nbytes()
		buf := make([]byte, min(hi-lo, chunkBytes))
		for done := int64(0); done < hi-lo; {
			b := buf[:min(int64(len(buf)), hi-lo-done)]
			if err := readFull(c.r, b, st.off+lo+done); err != nil {
				return c.readError(t, err)
			}
			if checkCRC {
				crc = crc32.Update(crc, crc32.IEEETable, b)
			}
			fn(int(done/is), b)
			done += int64(len(b))
		}
		if checkCRC && crc != st.crc {
			return &Error{Kind: ErrFormat, File: c.name, Tensor: t.info.Name, Msg: fmt.Sprintf("storage %q fails its CRC-32 check", printable(st.key))}
		}
		return nil
	}
	out := make([]byte, t.numel*is)
	spanBytes := (t.last - t.offset + 1) * is
	var err error
	switch {
	case mem != nil:
		err = forEachRun(t, func(pos, first, n int64) error {
			copy(out[first*is:(first+n)*is], mem[pos*is:(pos+n)*is])
			return nil
		})
	case spanBytes <= max(4*int64(len(out)), chunkBytes):
		// One read of everything between the first and the last element touched: the usual case (transposes,
		// column slices), and bounded by the storage, hence by the file size.
		span := make([]byte, spanBytes)
		if err := readFull(c.r, span, st.off+t.offset*is); err != nil {
			return c.readError(t, err)
		}
		err = forEachRun(t, func(pos, first, n int64) error {
			pos -= t.offset
			copy(out[first*is:(first+n)*is], span[pos*is:(pos+n)*is])
			return nil
		})
	default:
		// A sparse view (a few elements spread over a large storage): read each run where it is rather than
		// the whole span.
		err = forEachRun(t, func(pos, first, n int64) error {
			if err := readFull(c.r, out[first*is:(first+n)*is], st.off+pos*is); err != nil {
				return c.readError(t, err)
			}
			return nil
		})
	}
	if err != nil {
		return err
	}
	fn(0, out)
	return nil
}

func (c *Checkpoint) readError(t *tensor, err error) error {
	kind := error(nil)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		kind = ErrFormat
	}
	return &Error{Kind: kind, File: c.name, Tensor: t.info.Name, Msg: "reading tensor data", Err: err}
}

// inflate returns the whole of a compressed storage. Reading to EOF makes archive/zip verify the CRC-32 and
// that the entry holds exactly the declared number of bytes.
func (c *Checkpoint) inflate(t *tensor) ([]byte, error) {
	st := t.st
	fail := func(err error) error {
		return &Error{Kind: ErrFormat, File: c.name, Tensor: t.info.Name, Msg: fmt.Sprintf("inflating storage %q", printable(st.key)), Err: err}
	}
	rc, err := st.compressed.Open()
	if err != nil {
		return nil, fail(err)
	}
	defer rc.Close()
	mem := make([]byte, st.nbytes())
	if _, err := io.ReadFull(rc, mem); err != nil {
		return nil, fail(err)
	}
	var one [1]byte
	if n, err := rc.Read(one[:]); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = errors.New("entry longer than declared")
		}
		return nil, fail(err)
	}
	return mem, nil
}

// forEachRun walks a non-empty view in row-major order and calls fn(pos, first, n) for each run of n
// elements that are consecutive both in the storage (from element pos) and in the output (from element first).
// A run is the innermost dimension when it is dense, otherwise a single element.
func forEachRun(t *tensor, fn func(pos, first, n int64) error) error {
	shape := t.info.Shape
	outer := len(shape)
	run := int64(1)
	if outer > 0 && t.stride[outer-1] == 1 {
		outer--
		run = int64(shape[outer])
	}
	idx := make([]int, outer)
	pos := t.offset
	for first := int64(0); first < t.numel; first += run {
		if err := fn(pos, first, run); err != nil {
			return err
		}
		// Odometer step over the outer dimensions, carrying outwards.
		for d := outer - 1; d >= 0; d-- {
			idx[d]++
			pos += t.stride[d]
			if idx[d] < shape[d] {
				break
			}
			pos -= t.stride[d] * int64(shape[d])
			idx[d] = 0
		}
	}
	return nil
}

// checkView validates a strided view of a storage of storageNumel elements: every element index
// offset + sum(i_k * stride_k) must lie in [0, storageNumel). It returns the element count and the highest index
// touched, or a reason the view is invalid. Dimensions, strides and the offset must already be >= 0.
func checkView(shape, stride []int64, offset, storageNumel int64) (numel, last int64, msg string) {
	numel = 1
	for _, d := range shape {
		if d != 0 && numel > math.MaxInt64/d {
			return 0, 0, "element count overflows"
		}
		numel *= d
	}
	if numel == 0 {
		// No element is read, but torch still requires the offset to be inside (or at the end of) the storage.
		if offset > storageNumel {
			return 0, 0, fmt.Sprintf("storage offset %d is past the end of the storage (%d elements)", offset, storageNumel)
		}
		return 0, offset, ""
	}
	last = offset
	for i, d := range shape {
		s := stride[i]
		if d <= 1 || s == 0 {
			continue
		}
		if s > (math.MaxInt64-last)/(d-1) {
			return 0, 0, "strides overflow"
		}
		last += (d - 1) * s
	}
	if last >= storageNumel {
		return 0, 0, fmt.Sprintf("view (offset %d, size %v, stride %v) reaches element %d of a storage of %d elements",
			offset, shape, stride, last, storageNumel)
	}
	return numel, last, ""
}

// newTensor builds a validated tensor. maxNumel bounds the element count (and so the memory a read
// allocates) for views that repeat storage elements through zero strides.
func newTensor(name string, st *storage, shape, stride []int64, offset, maxNumel int64) (*tensor, error) {
	fail := func(kind error, format string, args ...any) error {
		return &Error{Kind: kind, Tensor: name, Msg: fmt.Sprintf(format, args...)}
	}
	if len(shape) > maxDims {
		return nil, fail(ErrUnsupported, "%d dimensions (max %d)", len(shape), maxDims)
	}
	numel, last, msg := checkView(shape, stride, offset, st.numel)
	if msg != "" {
		return nil, fail(ErrFormat, "%s", msg)
	}
	if numel > maxNumel {
		return nil, fail(ErrUnsupported, "%d elements from a storage of %d: too large a broadcast view", numel, st.numel)
	}
	t := &tensor{st: st, offset: offset, numel: numel, last: last, contiguous: true}
	t.info = TensorInfo{Name: name, DType: st.dtype, Shape: make([]int, len(shape))}
	t.stride = make([]int64, len(shape))
	want := int64(1) // the stride of a dense row-major layout
	for i := len(shape) - 1; i >= 0; i-- {
		d := shape[i]
		if int64(int(d)) != d {
			return nil, fail(ErrUnsupported, "dimension %d too large for this platform", d)
		}
		t.info.Shape[i] = int(d)
		if d != 1 {
			t.stride[i] = stride[i]
			if stride[i] != want {
				t.contiguous = false
			}
		}
		want *= d // cannot overflow: bounded by numel, or 0
	}
	if numel == 0 {
		t.contiguous = true
	}
	return t, nil
}

// decodeF32 converts src, little-endian values of type dt, to float32 (integers as decodeInts does).
func decodeF32(dst []float32, src []byte, dt DType) {
	le := binary.LittleEndian
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = core.F16ToF32(le.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(src[2*i:])) << 16)
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
		}
	default:
		decodeInts(dst, src, dt)
	}
}

// decodeInts converts src, little-endian integers of type dt (Bool as 0 and 1), to T: int64 for integer
// tensors, float32 for decodeF32. dst is left as it is for any other dt.
func decodeInts[T float32 | int64](dst []T, src []byte, dt DType) {
	le := binary.LittleEndian
	switch dt {
	case I64:
		for i := range dst {
			dst[i] = T(int64(le.Uint64(src[8*i:])))
		}
	case I32:
		for i := range dst {
			dst[i] = T(int32(le.Uint32(src[4*i:])))
		}
	case I16:
		for i := range dst {
			dst[i] = T(int16(le.Uint16(src[2*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = T(int8(src[i]))
		}
	case U8:
		for i := range dst {
			dst[i] = T(src[i])
		}
	case Bool:
		for i := range dst {
			dst[i] = 0
			if src[i] != 0 {
				dst[i] = 1
			}
		}
	}
}
