package core

import (
	"fmt"
	"math"
	"sort"
)

// WeightSource gives models the named tensors of a checkpoint: the official PyTorch key names
// ("blocks.0.attn.mat_qkv.weight"). loader.Checkpoint provides one for .pth and .safetensors files;
// MapSource serves tensors held in memory.
type WeightSource interface {
	// Names lists every tensor name.
	Names() []string
	// Shape returns a tensor's shape without reading its data.
	Shape(name string) (Shape, bool)
	// Load reads a tensor as f32.
	Load(name string) (HostTensor, error)
}

// MapSource is a WeightSource over tensors in memory.
type MapSource map[string]HostTensor

func (m MapSource) Names() []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func (m MapSource) Shape(name string) (Shape, bool) {
	t, ok := m[name]
	return t.Shape, ok
}

func (m MapSource) Load(name string) (HostTensor, error) {
	t, ok := m[name]
	if !ok {
		return HostTensor{}, fmt.Errorf("missing tensor %q", name)
	}
	return t, nil
}

// WeightError names the tensor that is missing, malformed or non-finite.
type WeightError struct {
	Tensor string
	Msg    string
}

func (e *WeightError) Error() string { return "weight " + e.Tensor + ": " + e.Msg }

// Weights reads tensors for a model build: it checks shapes and finiteness, uploads them, and records
// which names were used so that unknown keys can be reported afterwards.
type Weights struct {
	Src  WeightSource
	B    Backend
	used map[string]bool
}

// NewWeights starts a model build from src onto b.
func NewWeights(src WeightSource, b Backend) *Weights {
	return &Weights{Src: src, B: b, used: map[string]bool{}}
}

// Has reports whether the checkpoint has name.
func (w *Weights) Has(name string) bool {
	_, ok := w.Src.Shape(name)
	return ok
}

// Shape returns name's shape or nil.
func (w *Weights) Shape(name string) Shape {
	s, _ := w.Src.Shape(name)
	return s
}

// Host reads name, checks it has the expected shape (nil: any) and only finite values.
func (w *Weights) Host(name string, want ...int) (HostTensor, error) {
	s, ok := w.Src.Shape(name)
	if !ok {
		return HostTensor{}, &WeightError{name, "missing from checkpoint"}
	}
	if want != nil && !s.Equal(Shape(want)) {
		return HostTensor{}, &WeightError{name, fmt.Sprintf("shape %v, want %v", s, Shape(want))}
	}
	h, err := w.Src.Load(name)
	if err != nil {
		return HostTensor{}, &WeightError{name, err.Error()}
	}
	if len(h.Data) != s.Numel() {
		return HostTensor{}, &WeightError{name, fmt.Sprintf("%d values for shape %v", len(h.Data), s)}
	}
	for i, v := range h.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return HostTensor{}, &WeightError{name, fmt.Sprintf("non-finite value %v at element %d", v, i)}
		}
	}
	w.used[name] = true
	return h, nil
}

// Tensor reads name (see Host) and uploads it to the backend.
func (w *Weights) Tensor(name string, want ...int) (*Tensor, error) {
	h, err := w.Host(name, want...)
	if err != nil {
		return nil, err
	}
	t, err := w.B.Upload(h)
	if err != nil {
		return nil, &WeightError{name, "upload: " + err.Error()}
	}
	return t, nil
}

// MarkUsed records names a model reads by other means or deliberately ignores (derivable buffers).
func (w *Weights) MarkUsed(names ...string) {
	for _, n := range names {
		w.used[n] = true
	}
}

// Unused lists the checkpoint's tensors that the build did not use, sorted.
func (w *Weights) Unused() []string {
	var out []string
	for _, n := range w.Src.Names() {
		if !w.used[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// CheckAllUsed returns a *WeightError naming the first unused tensor (Unused) when the build left any
// of the checkpoint's tensors unread: an unknown key means a variant the loader does not implement.
// checkpoint says which, with its article, for the message: "a VAR checkpoint".
func (w *Weights) CheckAllUsed(checkpoint string) error {
	if un := w.Unused(); len(un) > 0 {
		return &WeightError{Tensor: un[0], Msg: fmt.Sprintf("unexpected in %s (%d unknown tensors)", checkpoint, len(un))}
	}
	return nil
}

// QuantSource is an optional WeightSource ability: some tensors are stored quantized (webvar's weights
// format). Quant returns the packed form of such a tensor; Load still returns it dequantized.
type QuantSource interface {
	Quant(name string) (QuantHost, bool)
}

// LinearWeight reads the weight [M, K] of a Linear layer. It stays quantized on the backend when the
// source stores it quantized and the backend can hold quantized weights (QuantUploader); otherwise it is
// read as f32 like Tensor. Only Linear may consume the result.
func (w *Weights) LinearWeight(name string, want ...int) (*Tensor, error) {
	qs, ok := w.Src.(QuantSource)
	if !ok {
		return w.Tensor(name, want...)
	}
	q, ok := qs.Quant(name)
	up, can := w.B.(QuantUploader)
	if !ok || !can {
		return w.Tensor(name, want...)
	}
	if want != nil && !q.Shape.Equal(Shape(want)) {
		return nil, &WeightError{name, fmt.Sprintf("shape %v, want %v", q.Shape, Shape(want))}
	}
	if err := q.Validate(); err != nil {
		return nil, &WeightError{name, err.Error()}
	}
	t, err := up.UploadQuant(q)
	if err != nil {
		return nil, &WeightError{name, "upload: " + err.Error()}
	}
	w.used[name] = true
	return t, nil
}

// Loader reads a model's tensors from Weights with a sticky error: after the first failure every call
// returns nil (or an empty HostTensor) and Err reports that failure, so a model's load reads as a list of
// its tensors with one error check at the end.
type Loader struct {
	W   *Weights
	err error
}

// NewLoader starts reading from w.
func NewLoader(w *Weights) *Loader { return &Loader{W: w} }

// Err is the first failure, or nil.
func (l *Loader) Err() error { return l.err }

// Tensor reads name (Weights.Tensor).
func (l *Loader) Tensor(name string, shape ...int) *Tensor {
	if l.err != nil {
		return nil
	}
	t, err := l.W.Tensor(name, shape...)
	l.err = err
	return t
}

// Linear reads a Linear layer's weight, which may stay quantized (Weights.LinearWeight).
func (l *Loader) Linear(name string, shape ...int) *Tensor {
	if l.err != nil {
		return nil
	}
	t, err := l.W.LinearWeight(name, shape...)
	l.err = err
	return t
}

// Host reads name into host memory (Weights.Host).
func (l *Loader) Host(name string, shape ...int) HostTensor {
	if l.err != nil {
		return HostTensor{}
	}
	h, err := l.W.Host(name, shape...)
	l.err = err
	return h
}

// Upload copies a tensor computed on the host to the backend.
func (l *Loader) Upload(h HostTensor) *Tensor {
	if l.err != nil {
		return nil
	}
	t, err := l.W.B.Upload(h)
	l.err = err
	return t
}
