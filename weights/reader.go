package weights

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/webvar/webvar/core"
)

// Source yields the raw bytes of the files of a weights directory (ManifestFile and the chunk files).
// size is the content length when known, else -1. The browser supplies its own Source over fetch.
type Source interface {
	Open(ctx context.Context, name string) (rc io.ReadCloser, size int64, err error)
}

// VersionedSource is a Source that can ask for a chunk by its content (its SHA-256 from the manifest): the
// HTTP source adds it to the URL, so that an HTTP cache may keep a chunk forever without ever serving an old
// conversion's bytes under the new manifest (chunk names are positional: chunk-00000.bin again after a
// new conversion).
type VersionedSource interface {
	Source
	OpenVersion(ctx context.Context, name, sha256 string) (rc io.ReadCloser, size int64, err error)
}

// DirSource reads a weights directory on the local file system.
func DirSource(dir string) Source { return dirSource(dir) }

type dirSource string

func (d dirSource) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, -1, err
	}
	// Names come from ChunkFileName, but a Source must not be a path traversal for any caller.
	if !filepath.IsLocal(name) || strings.ContainsAny(name, `/\`) {
		return nil, -1, fmt.Errorf("open %q: %w", name, fs.ErrInvalid)
	}
	f, err := os.Open(filepath.Join(string(d), name))
	if err != nil {
		return nil, -1, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, -1, err
	}
	return f, st.Size(), nil
}

// HTTPSource reads a weights directory served at baseURL (the directory's URL; file names are appended
// after a slash). A nil client means http.DefaultClient.
func HTTPSource(baseURL string, client *http.Client) Source {
	if client == nil {
		client = http.DefaultClient
	}
	return &httpSource{base: strings.TrimSuffix(baseURL, "/"), client: client}
}

type httpSource struct {
	base   string
	client *http.Client
}

func (h *httpSource) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	return h.get(ctx, h.base+"/"+url.PathEscape(name))
}

// OpenVersion asks for name?sha256=<hex>: servers may cache such a URL forever (webvar serve does).
func (h *httpSource) OpenVersion(ctx context.Context, name, sha256 string) (io.ReadCloser, int64, error) {
	return h.get(ctx, h.base+"/"+url.PathEscape(name)+"?sha256="+url.QueryEscape(sha256))
}

// openAttempt is OpenVersion for a retry: try n > 1 adds &retry=n, so that no HTTP cache (the browser's,
// a proxy's: versioned URLs are cached as immutable) can answer a retry with the bytes that just failed.
func (h *httpSource) openAttempt(ctx context.Context, name, sha256 string, n int) (io.ReadCloser, int64, error) {
	u := h.base + "/" + url.PathEscape(name) + "?sha256=" + url.QueryEscape(sha256)
	if n > 1 {
		u += "&retry=" + strconv.Itoa(n)
	}
	return h.get(ctx, u)
}

func (h *httpSource) get(ctx context.Context, u string) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, -1, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, -1, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err := fmt.Errorf("GET %s: %s", u, resp.Status)
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", err, fs.ErrNotExist)
		}
		return nil, -1, err
	}
	// ContentLength is -1 when unknown, including when the transport decompressed the body.
	return &httpBody{rc: resp.Body}, resp.ContentLength, nil
}

// Progress reports loading progress. BytesDone never decreases and reaches BytesTotal (the sum of the
// chunk sizes) when every chunk is loaded; Chunk is the chunk being read or just finished.
type Progress struct {
	BytesDone, BytesTotal   int64
	ChunksDone, ChunksTotal int
	Chunk                   string
}

// Cache stores verified chunks across loads, keyed by file name and SHA-256 (so a new conversion never
// hits an old entry). Load verifies what Get returns anyway: a corrupted entry is fetched again and
// replaced through Put.
type Cache interface {
	Get(name, sha256 string) ([]byte, bool)
	Put(name, sha256 string, data []byte)
}

// LoadOptions configures Load. The zero value is usable.
type LoadOptions struct {
	OnProgress func(Progress) // called on the loading goroutine; may be nil
	Cache      Cache          // may be nil
	// Retry is how failed downloads are tried again; nil means the source's default (NetworkRetry for
	// HTTPSource, no retry for local sources).
	Retry *Retry
	// OnRetry, if set, hears of every failed try that is about to be repeated (on the loading goroutine).
	OnRetry func(RetryEvent)
}

// progressStep is how many bytes of a chunk are read between progress reports.
const progressStep = 256 << 10

// Load reads a weights directory from src: the manifest is read and validated first, then each chunk is
// read into memory once, its size and SHA-256 verified before any tensor is decoded from it, and its
// tensors decoded. A file whose download fails or does not verify is tried again per opt.Retry; a chunk's
// bytes are never used unless they verify. A cancelled ctx stops it between and during chunk reads (and
// retry waits) with ctx.Err(). Other errors are *Error with kind ErrFormat, ErrUnsupported, ErrIntegrity
// or ErrIO, naming the chunk.
func Load(ctx context.Context, src Source, opt LoadOptions) (*Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	retry := retryPolicy(src, opt)
	data, err := withRetry(ctx, retry, ManifestFile, opt.OnRetry, manifestRetryable, func() ([]byte, error) { return readManifest(ctx, src) })
	if err != nil {
		return nil, err
	}
	m, err := DecodeManifest(data)
	if err != nil {
		return nil, err
	}

	md := &Model{m: m, tensors: make(map[string]*loaded, len(m.Tensors))}
	p := Progress{ChunksTotal: len(m.Chunks)}
	for _, c := range m.Chunks {
		p.BytesTotal += c.Size // at most MaxChunks * MaxChunkBytes: no overflow
	}
	report := func() {
		if opt.OnProgress != nil {
			opt.OnProgress(p)
		}
	}
	report()
	byChunk := tensorsByChunk(m)
	for i, c := range m.Chunks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p.Chunk = c.File
		before := p.BytesDone
		attempt := 0
		data, err := withRetry(ctx, retry, c.File, opt.OnRetry, Retryable, func() ([]byte, error) {
			attempt++
			return fetchChunk(ctx, src, c, opt.Cache, attempt, func(n int64) {
				// A retried chunk reads from 0 again: the total never goes backwards.
				if before+n > p.BytesDone {
					p.BytesDone = before + n
					report()
				}
			})
		})
		if err != nil {
			return nil, err
		}
		if err := decodeChunk(m, i, byChunk[i], data, md.tensors); err != nil {
			return nil, err
		}
		p.BytesDone = before + c.Size
		p.ChunksDone++
		report()
	}
	md.names = make([]string, 0, len(m.Tensors))
	for _, t := range m.Tensors {
		md.names = append(md.names, t.Name)
	}
	sort.Strings(md.names)
	return md, nil
}

func readManifest(ctx context.Context, src Source) ([]byte, error) {
	rc, size, err := src.Open(ctx, ManifestFile)
	if err != nil {
		return nil, ioErr(ctx, ManifestFile, "open", err)
	}
	defer rc.Close()
	if size > MaxManifestBytes {
		return nil, formatErr(ManifestFile, "", "%d bytes, more than %d", size, MaxManifestBytes)
	}
	data, err := io.ReadAll(io.LimitReader(ctxReader{ctx, rc}, MaxManifestBytes+1))
	if err != nil {
		return nil, ioErr(ctx, ManifestFile, "read", err)
	}
	if len(data) > MaxManifestBytes {
		return nil, formatErr(ManifestFile, "", "more than %d bytes", MaxManifestBytes)
	}
	return data, nil
}

// ioErr returns ctx's error when the failure is the cancellation, so that callers see ctx.Err() itself.
func ioErr(ctx context.Context, file, msg string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return &Error{Kind: ErrIO, Chunk: file, Msg: msg, Err: err}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// verifyChunk checks a chunk's size and SHA-256 against its manifest entry.
func verifyChunk(c ChunkEntry, data []byte) error {
	if int64(len(data)) != c.Size {
		what := "truncated"
		if int64(len(data)) > c.Size {
			what = "oversized"
		}
		return &Error{Kind: ErrIntegrity, Chunk: c.File, Msg: fmt.Sprintf("%s: %d bytes, want %d", what, len(data), c.Size)}
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != c.SHA256 {
		return &Error{Kind: ErrIntegrity, Chunk: c.File, Msg: fmt.Sprintf("sha256 %s, want %s", got, c.SHA256)}
	}
	return nil
}

// fetchChunk returns a chunk's verified bytes, from the cache when it holds a valid copy, otherwise from
// src (then stored in the cache). attempt counts the tries of this chunk, from 1. progress gets the bytes
// read so far.
func fetchChunk(ctx context.Context, src Source, c ChunkEntry, cache Cache, attempt int, progress func(int64)) ([]byte, error) {
	if cache != nil {
		if data, ok := cache.Get(c.File, c.SHA256); ok && verifyChunk(c, data) == nil {
			return data, nil
		}
	}
	var rc io.ReadCloser
	var size int64
	var err error
	if hs, ok := src.(*httpSource); ok {
		rc, size, err = hs.openAttempt(ctx, c.File, c.SHA256, attempt)
	} else if vs, ok := src.(VersionedSource); ok {
		rc, size, err = vs.OpenVersion(ctx, c.File, c.SHA256)
	} else {
		rc, size, err = src.Open(ctx, c.File)
	}
	if err != nil {
		return nil, ioErr(ctx, c.File, "open", err)
	}
	defer rc.Close()
	if size >= 0 && size != c.Size {
		// Known before reading a byte: do not download a chunk that cannot verify.
		return nil, &Error{Kind: ErrIntegrity, Chunk: c.File, Msg: fmt.Sprintf("size %d, want %d", size, c.Size)}
	}
	// Read at most one byte more than expected, to tell an oversized chunk from a complete one without
	// reading (or allocating for) the rest. The buffer grows with the data actually received, so a
	// manifest's claimed size alone does not make us allocate.
	limit := c.Size + 1
	data := make([]byte, 0, min(limit, DefaultChunkBytes+1))
	reported := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(data) == cap(data) {
			if int64(len(data)) == limit {
				break
			}
			data = slices.Grow(data, int(min(limit-int64(len(data)), int64(cap(data))+1)))
		}
		end := min(cap(data), len(data)+progressStep)
		n, err := rc.Read(data[len(data):end])
		data = data[:len(data)+n]
		if len(data)-reported >= progressStep && int64(len(data)) <= c.Size {
			reported = len(data)
			progress(int64(reported))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, ioErr(ctx, c.File, "read", err)
		}
	}
	if err := verifyChunk(c, data); err != nil {
		return nil, err
	}
	if cache != nil {
		cache.Put(c.File, c.SHA256, data)
	}
	return data, nil
}

// loaded is a decoded tensor: f32 data for the float schemes, the packed form for the quantized ones.
type loaded struct {
	entry TensorEntry
	data  []float32
	quant *core.QuantHost
}

// decodeChunk decodes the tensors idx of chunk ci from its bytes into out. m must be valid; data is not
// hash-checked here (Load has done it), only its length, so that any bytes at all decode without panic.
func decodeChunk(m *Manifest, ci int, idx []int, data []byte, out map[string]*loaded) error {
	c := m.Chunks[ci]
	if int64(len(data)) != c.Size {
		return &Error{Kind: ErrIntegrity, Chunk: c.File, Msg: fmt.Sprintf("%d bytes, want %d", len(data), c.Size)}
	}
	for _, i := range idx {
		t := m.Tensors[i]
		b := data[t.Offset : t.Offset+t.Length] // in range: Validate checked it against c.Size
		l := &loaded{entry: t}
		switch t.Scheme {
		case F32:
			l.data = make([]float32, len(b)/4)
			for k := range l.data {
				l.data[k] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
			}
		case F16:
			l.data = make([]float32, len(b)/2)
			for k := range l.data {
				l.data[k] = core.F16ToF32(binary.LittleEndian.Uint16(b[2*k:]))
			}
		case Int8, Int4:
			qs, _ := t.Scheme.Quant()
			M, K, err := QuantRows(t.Shape) // cannot fail after Validate
			if err != nil {
				return formatErr(c.File, t.Name, "%v", err)
			}
			q := core.QuantHost{
				Scheme: qs, Shape: core.Shape{M, K},
				Codes:  make([]uint32, M*qs.WordsPerRow(K)),
				Scales: make([]float32, M*core.QuantBlocks(K)),
			}
			for k := range q.Codes {
				q.Codes[k] = binary.LittleEndian.Uint32(b[4*k:])
			}
			sb := b[4*len(q.Codes):]
			if t.Scales == F16 {
				for k := range q.Scales {
					q.Scales[k] = core.F16ToF32(binary.LittleEndian.Uint16(sb[2*k:]))
				}
			} else {
				for k := range q.Scales {
					q.Scales[k] = math.Float32frombits(binary.LittleEndian.Uint32(sb[4*k:]))
				}
			}
			// The hash proves the bytes are what the writer wrote, not that the writer was right.
			if err := q.Validate(); err != nil {
				return &Error{Kind: ErrFormat, Chunk: c.File, Tensor: t.Name, Err: err}
			}
			l.quant = &q
		default:
			return formatErr(c.File, t.Name, "unknown scheme %q", t.Scheme) // unreachable after Validate
		}
		out[t.Name] = l
	}
	return nil
}

// Model is a loaded weights directory. It is a core.WeightSource (every tensor as f32: f16 widened,
// quantized tensors dequantized) and a core.QuantSource (the packed form of int8/int4 tensors of shape
// [M, K]; quantized tensors of higher rank, such as conv weights, only exist to shrink the download and
// are served dequantized, in their own shape, by Load alone).
// Tensors returned by Load and Quant share the Model's memory and must not be modified.
type Model struct {
	m       *Manifest
	tensors map[string]*loaded
	names   []string
}

var (
	_ core.WeightSource = (*Model)(nil)
	_ core.QuantSource  = (*Model)(nil)
)

// Manifest returns the manifest the model was loaded from.
func (md *Model) Manifest() *Manifest { return md.m }

// Names lists every tensor name, sorted.
func (md *Model) Names() []string { return slices.Clone(md.names) }

// Shape returns a tensor's shape.
func (md *Model) Shape(name string) (core.Shape, bool) {
	l, ok := md.tensors[name]
	if !ok {
		return nil, false
	}
	return core.Shape(slices.Clone(l.entry.Shape)), true
}

// Load returns a tensor as f32. A quantized tensor is dequantized on each call (the Model keeps only its
// packed form).
func (md *Model) Load(name string) (core.HostTensor, error) {
	l, ok := md.tensors[name]
	if !ok {
		return core.HostTensor{}, &core.WeightError{Tensor: name, Msg: "not in the weights directory"}
	}
	if l.quant != nil {
		h, err := l.quant.Dequantize()
		if err != nil {
			return core.HostTensor{}, err
		}
		h.Shape = core.Shape(slices.Clone(l.entry.Shape)) // [M, K] as stored; the same values in row-major order
		return h, nil
	}
	return core.HostTensor{Shape: core.Shape(slices.Clone(l.entry.Shape)), Data: l.data}, nil
}

// Quant returns the packed form of an int8/int4 tensor of shape [M, K]; false for a float tensor, a
// quantized tensor of another rank (a conv weight: Load dequantizes it) or an unknown name.
func (md *Model) Quant(name string) (core.QuantHost, bool) {
	l, ok := md.tensors[name]
	if !ok || l.quant == nil || len(l.entry.Shape) != 2 {
		return core.QuantHost{}, false
	}
	return *l.quant, true
}

// FSSource reads a weights directory from a file system rooted at the directory, such as an embedded one
// (//go:embed of the manifest and chunks).
func FSSource(fsys fs.FS) Source { return fsSource{fsys} }

type fsSource struct{ fsys fs.FS }

func (s fsSource) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, -1, err
	}
	if !fs.ValidPath(name) || strings.Contains(name, "/") {
		return nil, -1, fmt.Errorf("open %q: %w", name, fs.ErrInvalid)
	}
	f, err := s.fsys.Open(name)
	if err != nil {
		return nil, -1, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, -1, err
	}
	return f, st.Size(), nil
}

// LoadManifest reads and validates only the manifest of src (a few kilobytes): enough to learn a model's
// configuration and metadata before streaming its chunks.
func LoadManifest(ctx context.Context, src Source) (*Manifest, error) {
	data, err := readManifest(ctx, src)
	if err != nil {
		return nil, err
	}
	return DecodeManifest(data)
}
