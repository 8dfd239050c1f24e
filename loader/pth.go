package loader

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"strings"
)

// torch.save (since torch 1.6) writes a zip archive:
//
//	<root>/data.pkl      the pickled object; tensors refer to storages through persistent ids
//	<root>/data/<key>    one raw little-endian storage per key
//	<root>/version       serialization version
//	<root>/byteorder     "little" or "big" (newer torch only)
//
// <root> is the file stem by default and can be anything, so it is derived from the one */data.pkl entry.
// torch stores entries uncompressed and 64-byte aligned, which lets storages be read in place with ReadAt.

// maxPickleBytes bounds data.pkl. A state_dict pickle costs a few hundred bytes per tensor, so this allows
// around a million tensors while refusing to inflate an absurd declared size.
const maxPickleBytes = 256 << 20

// maxDeflateRatio is the best compression deflate can achieve (about 1032:1): an entry that claims to expand
// further is lying about its size.
const maxDeflateRatio = 1032

func openPTH(r io.ReaderAt, size int64, key string) (*Checkpoint, error) {
	zr, err := zip.NewReader(r, size)
	// Insecure names (absolute, "..") only matter when extracting to disk, which never happens here.
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, &Error{Kind: ErrFormat, Msg: "reading the zip directory", Err: err}
	}
	files := make(map[string]*zip.File, len(zr.File))
	var roots []string
	for _, f := range zr.File {
		if _, dup := files[f.Name]; dup {
			return nil, &Error{Kind: ErrFormat, Msg: fmt.Sprintf("duplicate zip entry %q", printable(f.Name))}
		}
		files[f.Name] = f
		if root, ok := strings.CutSuffix(f.Name, "/data.pkl"); ok && root != "" && !strings.Contains(root, "/") {
			roots = append(roots, root)
		}
	}
	switch {
	case len(roots) == 0:
		return nil, &Error{Kind: ErrFormat, Msg: "zip archive without <root>/data.pkl: not written by torch.save"}
	case len(roots) > 1:
		return nil, &Error{Kind: ErrFormat, Msg: fmt.Sprintf("zip archive with %d */data.pkl entries", len(roots))}
	}
	root := roots[0]
	if files[root+"/constants.pkl"] != nil {
		return nil, &Error{Kind: ErrUnsupported, Msg: "TorchScript archive (torch.jit.save): save model.state_dict() with torch.save instead"}
	}
	if f := files[root+"/byteorder"]; f != nil {
		b, err := readEntry(f, 64, size)
		if err != nil {
			return nil, err
		}
		if order := strings.TrimSpace(string(b)); order != "little" {
			return nil, &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("byte order %q (only little-endian checkpoints are read)", printable(order))}
		}
	}
	pkl, err := readEntry(files[root+"/data.pkl"], maxPickleBytes, size)
	if err != nil {
		return nil, err
	}
	obj, err := unpickle(pkl)
	if err != nil {
		return nil, err
	}
	items, err := stateDictAt(obj, key)
	if err != nil {
		return nil, err
	}

	c := &Checkpoint{format: "pth", tensors: make([]*tensor, 0, len(items))}
	storages := map[string]*storage{}
	for _, it := range items {
		ref := it.ref.storage
		st := storages[ref.key]
		if st == nil {
			if st, err = locateStorage(files, root, ref, size); err != nil {
				return nil, withTensor(err, it.name)
			}
			storages[ref.key] = st
		} else if st.dtype != ref.dtype || st.numel != ref.numel {
			// torch.save refuses to write one storage under two types, so this file was not written by it.
			return nil, &Error{Kind: ErrFormat, Tensor: it.name, Msg: fmt.Sprintf(
				"storage %q used as %s[%d] and as %s[%d]", printable(ref.key), st.dtype, st.numel, ref.dtype, ref.numel)}
		}
		// A dense view has at most one element per storage byte; only zero-stride broadcasts can be larger,
		// and those are held to the file size so that a read allocates a bounded amount.
		t, err := newTensor(it.name, st, it.ref.shape, it.ref.stride, it.ref.offset, max(size, st.nbytes()))
		if err != nil {
			return nil, err
		}
		c.tensors = append(c.tensors, t)
	}
	return c, nil
}

func withTensor(err error, name string) error {
	var e *Error
	if errors.As(err, &e) && e.Tensor == "" {
		e.Tensor = name
	}
	return err
}

// readEntry reads a small zip entry whole. archive/zip checks the CRC-32 and the declared size at EOF.
func readEntry(f *zip.File, limit int64, size int64) ([]byte, error) {
	fail := func(msg string, err error) error {
		return &Error{Kind: ErrFormat, Msg: fmt.Sprintf("zip entry %q: %s", printable(f.Name), msg), Err: err}
	}
	if f.UncompressedSize64 > uint64(limit) {
		return nil, &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("zip entry %q: %d bytes is more than the %d this reader accepts",
			printable(f.Name), f.UncompressedSize64, limit)}
	}
	if f.CompressedSize64 > uint64(size) {
		return nil, fail("larger than the file", nil)
	}
	if f.Method != zip.Store && f.UncompressedSize64/maxDeflateRatio > f.CompressedSize64+1 {
		return nil, fail("implausible compression ratio", nil)
	}
	rc, err := f.Open()
	if err != nil {
		if errors.Is(err, zip.ErrAlgorithm) {
			return nil, &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("zip entry %q: compression method %d", printable(f.Name), f.Method), Err: err}
		}
		return nil, fail("open", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fail("read", err)
	}
	if int64(len(b)) > limit {
		return nil, fail("longer than declared", nil)
	}
	return b, nil
}

// locateStorage finds the bytes of a storage and checks that the entry holds exactly numel*itemsize bytes
// lying inside the file.
func locateStorage(files map[string]*zip.File, root string, ref *storageRef, size int64) (*storage, error) {
	st := &storage{key: ref.key, dtype: ref.dtype, numel: ref.numel}
	want := st.nbytes() // no overflow: checked when the persistent id was read
	name := root + "/data/" + ref.key
	fail := func(kind error, format string, args ...any) error {
		return &Error{Kind: kind, Msg: fmt.Sprintf("storage %q: ", printable(ref.key)) + fmt.Sprintf(format, args...)}
	}
	f := files[name]
	if f == nil {
		if want == 0 {
			return st, nil
		}
		return nil, fail(ErrFormat, "no zip entry %q", printable(name))
	}
	if f.UncompressedSize64 != uint64(want) {
		return nil, fail(ErrFormat, "zip entry has %d bytes, want %d (%d x %s)", f.UncompressedSize64, want, ref.numel, ref.dtype)
	}
	switch f.Method {
	case zip.Store:
		if f.CompressedSize64 != f.UncompressedSize64 {
			return nil, fail(ErrFormat, "stored entry with compressed size %d != size %d", f.CompressedSize64, f.UncompressedSize64)
		}
		off, err := f.DataOffset()
		if err != nil {
			return nil, &Error{Kind: ErrFormat, Msg: fmt.Sprintf("storage %q: bad local zip header", printable(ref.key)), Err: err}
		}
		if off < 0 || off > size || want > size-off {
			return nil, fail(ErrFormat, "data at %d+%d extends past the end of the file (%d bytes)", off, want, size)
		}
		st.off = off
	case zip.Deflate:
		if f.CompressedSize64 > uint64(size) || uint64(want)/maxDeflateRatio > f.CompressedSize64+1 {
			return nil, fail(ErrFormat, "compressed size %d does not fit %d bytes of data in a %d-byte file", f.CompressedSize64, want, size)
		}
		st.compressed = f
	default:
		return nil, fail(ErrUnsupported, "compression method %d", f.Method)
	}
	st.crc = f.CRC32
	return st, nil
}

// nestedStateDicts are the paths, in order of preference, where a checkpoint without top-level tensors
// may keep its state_dict.
var nestedStateDicts = [][]string{{"model_ema"}, {"model"}, {"state_dict"}, {"state_dict_ema"}, {"trainer", "var_wo_ddp"}}

// lookupDict follows string keys through nested dicts.
func lookupDict(d *pyDict, path []string) (any, bool) {
	var cur any = d
	for _, k := range path {
		dd, ok := cur.(*pyDict)
		if !ok {
			return nil, false
		}
		found := false
		for i, key := range dd.keys {
			if s, ok := key.(string); ok && s == k {
				cur, found = dd.vals[i], true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return cur, true
}

type namedTensor struct {
	name string
	ref  *tensorRef
}

// stateDictAt is stateDict of the dict under the top-level key (OpenStateDict), or of obj for "".
func stateDictAt(obj any, key string) ([]namedTensor, error) {
	if key == "" {
		return stateDict(obj)
	}
	d, ok := obj.(*pyDict)
	if !ok {
		return nil, &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("the pickled object is %s, not a dict with %q", typeName(obj), key)}
	}
	sub, ok := lookupDict(d, []string{key})
	if !ok {
		return nil, &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("no %q in the checkpoint", key)}
	}
	return stateDict(sub)
}

// stateDict extracts the tensors of a plain state_dict, in insertion order. Values that are not tensors
// (torch keeps e.g. BatchNorm's num_batches_tracked as a tensor, but users add ints and strings) are skipped.
func stateDict(obj any) ([]namedTensor, error) {
	d, ok := obj.(*pyDict)
	if !ok {
		return nil, &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("the pickled object is %s, not a state_dict (dict of str to tensor)", typeName(obj))}
	}
	var out []namedTensor
	for i, k := range d.keys {
		ref, ok := d.vals[i].(*tensorRef)
		if !ok {
			continue
		}
		name, ok := k.(string)
		if !ok {
			return nil, &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("state_dict key of type %s", typeName(k))}
		}
		out = append(out, namedTensor{name, ref})
	}
	if len(out) == 0 && len(d.keys) > 0 {
		// A training checkpoint keeps the weights one or two levels down, under names the official
		// releases use: {'model': sd} (FlexVAE.pth, LlamaGen), {'model_ema': sd, 'model': sd} (MAR: the EMA
		// weights are the ones released models sample with), {'state_dict': sd} (RQ-VAE), and
		// {'trainer': {'var_wo_ddp': sd}} (VAR/FlexVAR trainer checkpoints).
		for _, path := range nestedStateDicts {
			if sub, ok := lookupDict(d, path); ok {
				if nested, err := stateDict(sub); err == nil && len(nested) > 0 {
					return nested, nil
				}
			}
		}
		// Typically a training checkpoint {"model": state_dict, "optimizer": ..., "epoch": ...}. Which entry
		// holds the weights is the caller's knowledge, not something to guess here.
		const show = 20
		keys := make([]string, 0, show)
		for _, k := range d.keys[:min(len(d.keys), show)] {
			keys = append(keys, describe(k))
		}
		if len(d.keys) > show {
			keys = append(keys, fmt.Sprintf("... (%d keys)", len(d.keys)))
		}
		return nil, &Error{Kind: ErrUnsupported, Msg: "no tensors at the top level, so not a plain state_dict (top-level keys: " +
			strings.Join(keys, ", ") + "); re-save the nested state_dict on its own"}
	}
	return out, nil
}
