package rq

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/webvar/webvar/core"
)

// An official release is a directory (or a .tar.gz of one) with the two stages side by side:
//
//	stage1/config.yaml  stage1/model.pt   the RQ-VAE
//	stage2/config.yaml  stage2/model.pt   the RQ-Transformer
//
// Each model.pt is a torch.save of {'state_dict': sd} (the training code's save_ckpt; it may also hold
// 'optimizer', 'scheduler', 'discriminator' and 'state_dict_ema'). The official sampler reads
// ['state_dict'], or ['state_dict_ema'] with --ema for the RQ-Transformer (stage 2) only: the RQ-VAE is
// always read from ['state_dict'].

// Member names of a release.
const (
	Stage1Config = "stage1/config.yaml"
	Stage1Model  = "stage1/model.pt"
	Stage2Config = "stage2/config.yaml"
	Stage2Model  = "stage2/model.pt"
)

// DefaultMaxModelBytes bounds a model.pt extracted from an archive (the 3.8B release's stage 2 with its
// EMA copy is about 30 GB).
const DefaultMaxModelBytes = 64 << 30

// Opener opens a torch checkpoint as named tensors, picking the nested state dict named key
// ("state_dict" or "state_dict_ema"). In webvar it is the loader package's (loader.Open, then
// Checkpoint.WeightSource); core does not import the loader.
type Opener func(path, key string) (src core.WeightSource, close func() error, err error)

// ReleaseOptions configure OpenRelease and LoadRelease.
type ReleaseOptions struct {
	// Open opens the model.pt files (required by LoadRelease).
	Open Opener
	// EMA reads the RQ-Transformer's EMA weights (stage2's state_dict_ema, the official --ema) instead of
	// its state_dict; the RQ-VAE is read from state_dict either way, as officially.
	EMA bool
	// TempDir is where a .tar.gz's model.pt files are extracted ("": the system's temporary directory);
	// the files are removed by Release.Close.
	TempDir string
	// MaxModelBytes bounds each extracted model.pt (0: DefaultMaxModelBytes).
	MaxModelBytes int64
}

// Stage1Key is the nested state dict of stage1/model.pt: always state_dict, as the official sampler
// (main_sampling_fid.py) loads the RQ-VAE without --ema whatever it is given.
const Stage1Key = "state_dict"

// StateDictKey is the nested state dict of stage2/model.pt the options ask for (--ema applies to the
// RQ-Transformer only).
func (opt ReleaseOptions) StateDictKey() string {
	if opt.EMA {
		return "state_dict_ema"
	}
	return "state_dict"
}

// Release is an opened release: both config.yaml files parsed, both model.pt files on disk.
type Release struct {
	Name       string // the directory or archive, for messages
	VAE        VAESpec
	Config     Config   // stage2/config.yaml's architecture (FFN 0 until checked against the tensors)
	Defaults   Defaults // its sampling settings (zero where it has none)
	Stage1Path string   // stage1/model.pt
	Stage2Path string   // stage2/model.pt
	tmp        string   // the extraction directory, removed by Close
}

// Close removes the files extracted from an archive (a directory release is left alone).
func (r *Release) Close() error {
	if r.tmp == "" {
		return nil
	}
	err := os.RemoveAll(r.tmp)
	r.tmp = ""
	return err
}

// ReleaseError is a release directory or archive without the expected members, or an archive that cannot
// be read.
type ReleaseError struct {
	Path string
	Msg  string
	Err  error
}

func (e *ReleaseError) Error() string {
	if e.Err != nil {
		return "rq release " + e.Path + ": " + e.Msg + ": " + e.Err.Error()
	}
	return "rq release " + e.Path + ": " + e.Msg
}

func (e *ReleaseError) Unwrap() error { return e.Err }

// OpenRelease opens a release directory or a .tar.gz of one (gzip is recognised by its magic bytes) and
// parses its config.yaml files. In an archive the four members may sit under one common top directory;
// the model.pt files are extracted to a temporary directory. Call Close when done.
func OpenRelease(p string, opt ReleaseOptions) (*Release, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, &ReleaseError{Path: p, Msg: "open", Err: err}
	}
	r := &Release{Name: p}
	var cfg1, cfg2 []byte
	if st.IsDir() {
		for _, m := range []struct {
			name string
			dst  *[]byte
		}{{Stage1Config, &cfg1}, {Stage2Config, &cfg2}} {
			if *m.dst, err = readSmall(filepath.Join(p, filepath.FromSlash(m.name))); err != nil {
				return nil, &ReleaseError{Path: p, Msg: "reading " + m.name, Err: err}
			}
		}
		r.Stage1Path, r.Stage2Path = filepath.Join(p, filepath.FromSlash(Stage1Model)), filepath.Join(p, filepath.FromSlash(Stage2Model))
		for _, f := range []string{r.Stage1Path, r.Stage2Path} {
			if _, err := os.Stat(f); err != nil {
				return nil, &ReleaseError{Path: p, Msg: "no model.pt", Err: err}
			}
		}
	} else {
		if cfg1, cfg2, err = r.extract(p, opt); err != nil {
			r.Close()
			return nil, err
		}
	}
	if r.VAE, err = ParseVAEConfig(Stage1Config, cfg1); err != nil {
		r.Close()
		return nil, err
	}
	if r.Config, r.Defaults, err = ParseConfig(Stage2Config, cfg2); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.crossCheck(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// crossCheck compares the two config files: the transformer must predict the RQ-VAE's codes.
func (r *Release) crossCheck() error {
	c, v := r.Config, r.VAE
	bad := func(key string, a, b any, key1 string) error {
		return &ConfigError{File: Stage2Config, Key: key, Msg: fmt.Sprintf("%v, but %s says %s %v", a, Stage1Config, key1, b)}
	}
	switch {
	case c.V != v.NEmbed:
		return bad("arch.vocab_size", c.V, v.NEmbed, "arch.hparams.n_embed")
	case c.InEmbed != v.Embed:
		return bad("arch.input_embed_dim", c.InEmbed, v.Embed, "arch.hparams.embed_dim")
	case c.H != v.H || c.W != v.W || c.D != v.D:
		return bad("arch.block_size", []int{c.H, c.W, c.D}, []int{v.H, v.W, v.D}, "arch.hparams.code_shape")
	}
	return nil
}

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("more than %d bytes: not a config.yaml", maxConfigBytes)
	}
	return data, nil
}

// extract reads a .tar.gz release: the config.yaml members into memory, the model.pt members into files
// of a new temporary directory.
func (r *Release) extract(p string, opt ReleaseOptions) (cfg1, cfg2 []byte, err error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, &ReleaseError{Path: p, Msg: "open", Err: err}
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || magic != [2]byte{0x1f, 0x8b} {
		return nil, nil, &ReleaseError{Path: p, Msg: "neither a release directory nor a .tar.gz (no gzip header)"}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, &ReleaseError{Path: p, Msg: "seek", Err: err}
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, nil, &ReleaseError{Path: p, Msg: "gzip", Err: err}
	}
	defer zr.Close()
	maxModel := opt.MaxModelBytes
	if maxModel <= 0 {
		maxModel = DefaultMaxModelBytes
	}
	r.tmp, err = os.MkdirTemp(opt.TempDir, "rq-release-")
	if err != nil {
		return nil, nil, &ReleaseError{Path: p, Msg: "temporary directory", Err: err}
	}
	// found[prefix][member]: the config bytes, or the extracted model's path.
	type entry struct {
		data []byte
		path string
	}
	found := map[string]map[string]entry{}
	tr := tar.NewReader(zr)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// Read the rest of the gzip stream too, so that its checksum is verified.
			if _, err := io.Copy(io.Discard, io.LimitReader(zr, 1<<20)); err != nil {
				return nil, nil, &ReleaseError{Path: p, Msg: "reading the archive's end (truncated?)", Err: err}
			}
			break
		}
		if err != nil {
			return nil, nil, &ReleaseError{Path: p, Msg: "reading the archive (truncated or not a tar.gz?)", Err: err}
		}
		if h.Typeflag != tar.TypeReg {
			continue // directories, links and the like: a release needs none
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		var member, prefix string
		for _, m := range []string{Stage1Config, Stage1Model, Stage2Config, Stage2Model} {
			if name == m {
				member = m
			} else if pre, ok := strings.CutSuffix(name, "/"+m); ok {
				member, prefix = m, pre
			}
		}
		if member == "" || strings.HasPrefix(path.Base(prefix), "._") {
			continue
		}
		if found[prefix] == nil {
			found[prefix] = map[string]entry{}
		}
		if _, dup := found[prefix][member]; dup {
			return nil, nil, &ReleaseError{Path: p, Msg: fmt.Sprintf("member %q appears twice", h.Name)}
		}
		var e entry
		if strings.HasSuffix(member, ".yaml") {
			if h.Size > maxConfigBytes {
				return nil, nil, &ReleaseError{Path: p, Msg: fmt.Sprintf("member %q: %d bytes is more than a config.yaml may have (%d)", h.Name, h.Size, maxConfigBytes)}
			}
			if e.data, err = io.ReadAll(io.LimitReader(tr, maxConfigBytes+1)); err != nil {
				return nil, nil, &ReleaseError{Path: p, Msg: fmt.Sprintf("member %q (truncated archive?)", h.Name), Err: err}
			}
		} else {
			if h.Size > maxModel {
				return nil, nil, &ReleaseError{Path: p, Msg: fmt.Sprintf("member %q: %d bytes is more than the %d allowed (ReleaseOptions.MaxModelBytes)", h.Name, h.Size, maxModel)}
			}
			e.path = filepath.Join(r.tmp, fmt.Sprintf("%d-%s", n, strings.ReplaceAll(member, "/", "-")))
			n++
			if err := copyFile(e.path, tr, h.Size); err != nil {
				return nil, nil, &ReleaseError{Path: p, Msg: fmt.Sprintf("extracting %q (truncated archive?)", h.Name), Err: err}
			}
		}
		found[prefix][member] = e
	}
	var complete []string
	for pre, ms := range found {
		if len(ms) == 4 {
			complete = append(complete, pre)
		}
	}
	sort.Strings(complete)
	switch {
	case len(complete) == 0:
		var have []string
		for pre, ms := range found {
			for m := range ms {
				have = append(have, path.Join(pre, m))
			}
		}
		sort.Strings(have)
		return nil, nil, &ReleaseError{Path: p, Msg: fmt.Sprintf("no directory with all of %s, %s, %s and %s (found %v)",
			Stage1Config, Stage1Model, Stage2Config, Stage2Model, have)}
	case len(complete) > 1:
		return nil, nil, &ReleaseError{Path: p, Msg: fmt.Sprintf("several releases in one archive (under %q): extract the one to use", complete)}
	}
	ms := found[complete[0]]
	r.Stage1Path, r.Stage2Path = ms[Stage1Model].path, ms[Stage2Model].path
	return ms[Stage1Config].data, ms[Stage2Config].data, nil
}

// copyFile writes exactly size bytes of r to a new file.
func copyFile(dst string, r io.Reader, size int64) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Load builds the pipeline from the release's tensors (stage2, stage1: its model.pt files opened), after
// checking them against the config files: every disagreement names the key and the tensor, every bad
// tensor its file and name.
func (r *Release) Load(stage2, stage1 core.WeightSource, b core.Backend) (*Pipeline, error) {
	cfg, err := CheckConfig(Stage2Config, r.Config, stage2)
	if err != nil {
		return nil, fmt.Errorf("rq transformer: %w", err)
	}
	m, err := Load(core.NewWeights(stage2, b), cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Stage2Model, err)
	}
	v, err := LoadVAE(core.NewWeights(stage1, b), cfg.D)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Stage1Model, err)
	}
	if err := r.VAE.check(Stage1Config, v); err != nil {
		return nil, fmt.Errorf("rq vae: %w", err)
	}
	p, err := NewPipeline(m, v)
	if err != nil {
		return nil, err
	}
	p.Defaults = r.Defaults
	return p, nil
}

// LoadRelease opens a release directory or .tar.gz (OpenRelease), reads both model.pt files with
// opt.Open and builds the pipeline on b; extracted files are removed before it returns.
func LoadRelease(p string, b core.Backend, opt ReleaseOptions) (*Pipeline, error) {
	if opt.Open == nil {
		return nil, fmt.Errorf("rq: ReleaseOptions.Open is required (the loader package's checkpoint reader)")
	}
	r, err := OpenRelease(p, opt)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	key := opt.StateDictKey()
	src2, close2, err := opt.Open(r.Stage2Path, key)
	if err != nil {
		return nil, fmt.Errorf("rq release %s: %s: %w", p, Stage2Model, err)
	}
	defer close2()
	src1, close1, err := opt.Open(r.Stage1Path, Stage1Key)
	if err != nil {
		return nil, fmt.Errorf("rq release %s: %s: %w", p, Stage1Model, err)
	}
	defer close1()
	return r.Load(src2, src1, b)
}

// IsRelease reports whether p looks like a release: a directory with stage1/config.yaml and
// stage2/config.yaml, or a .tar.gz (IsArchive).
func IsRelease(p string) bool {
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		_, err1 := os.Stat(filepath.Join(p, filepath.FromSlash(Stage1Config)))
		_, err2 := os.Stat(filepath.Join(p, filepath.FromSlash(Stage2Config)))
		return err1 == nil && err2 == nil
	}
	return IsArchive(p)
}

// IsArchive reports whether p is a file starting with gzip's magic bytes (a .tar.gz release).
func IsArchive(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [2]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && bytes.Equal(magic[:], []byte{0x1f, 0x8b})
}
