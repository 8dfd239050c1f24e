package convert

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/weights"
)

// Meta keys of a model's default sampling settings (weights/FORMAT.md, "meta"). Official checkpoints have
// none (webvar generate's flag defaults are the VAR paper's ImageNet settings); a model trained for
// webvar records the settings its quality was measured with.
const (
	MetaCFG        = "sampling.cfg"
	MetaTopK       = "sampling.top_k"
	MetaTopP       = "sampling.top_p"
	MetaMoreSmooth = "sampling.more_smooth"
)

// MetaSettingPrefix starts the meta keys of a model's default settings by gen setting name
// ("setting.iters" = "16"): any family's, checked by the family when the model is loaded.
const MetaSettingPrefix = "setting."

// SettingsOf reads the default settings stored under MetaSettingPrefix (empty when there are none).
func SettingsOf(m *weights.Manifest) gen.Settings {
	s := gen.Settings{}
	for k, v := range m.Meta {
		if name, ok := strings.CutPrefix(k, MetaSettingPrefix); ok && name != "" {
			s[name] = v
		}
	}
	return s
}

// Sampling is a model's default sampling settings.
type Sampling struct {
	CFG        float64 // classifier-free guidance strength, >= 0
	TopK       int     // 0: off, 1: greedy
	TopP       float64 // 0: off, else (0, 1]
	MoreSmooth bool
}

// Validate reports settings that no generation accepts.
func (s Sampling) Validate() error {
	switch {
	case !(s.CFG >= 0) || math.IsInf(s.CFG, 0):
		return fmt.Errorf("sampling: cfg %v must be finite and >= 0", s.CFG)
	case s.TopK < 0:
		return fmt.Errorf("sampling: top_k %d must be >= 0", s.TopK)
	case !(s.TopP >= 0 && s.TopP <= 1):
		return fmt.Errorf("sampling: top_p %v must be in [0, 1]", s.TopP)
	}
	return nil
}

// Meta returns the settings as manifest meta entries.
func (s Sampling) Meta() map[string]string {
	return map[string]string{
		MetaCFG:        strconv.FormatFloat(s.CFG, 'g', -1, 64),
		MetaTopK:       strconv.Itoa(s.TopK),
		MetaTopP:       strconv.FormatFloat(s.TopP, 'g', -1, 64),
		MetaMoreSmooth: strconv.FormatBool(s.MoreSmooth),
	}
}

// SamplingOf reads the default sampling settings from a manifest's meta: nil when it has none, an error
// naming the key when they are present but malformed (all four keys go together).
func SamplingOf(m *weights.Manifest) (*Sampling, error) {
	if _, ok := m.Meta[MetaCFG]; !ok {
		return nil, nil
	}
	var s Sampling
	var err error
	get := func(key string) string {
		v, ok := m.Meta[key]
		if !ok && err == nil {
			err = fmt.Errorf("weights manifest: meta %s is missing (it goes with %s)", key, MetaCFG)
		}
		return v
	}
	parse := func(key string, f func(string) error) {
		v := get(key)
		if err == nil {
			if e := f(v); e != nil {
				err = fmt.Errorf("weights manifest: meta %s = %q: %w", key, v, e)
			}
		}
	}
	parse(MetaCFG, func(v string) (e error) { s.CFG, e = strconv.ParseFloat(v, 64); return })
	parse(MetaTopK, func(v string) (e error) { s.TopK, e = strconv.Atoi(v); return })
	parse(MetaTopP, func(v string) (e error) { s.TopP, e = strconv.ParseFloat(v, 64); return })
	parse(MetaMoreSmooth, func(v string) (e error) { s.MoreSmooth, e = strconv.ParseBool(v); return })
	if err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("weights manifest: %w", err)
	}
	return &s, nil
}
