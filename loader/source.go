package loader

import "github.com/webvar/webvar/core"

// WeightSource adapts a Checkpoint to core.WeightSource, the models' view of named tensors.
func (c *Checkpoint) WeightSource() core.WeightSource { return ckptSource{c} }

type ckptSource struct{ c *Checkpoint }

func (s ckptSource) Names() []string {
	ts := s.c.Tensors()
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return names
}

func (s ckptSource) Shape(name string) (core.Shape, bool) {
	info, ok := s.c.Info(name)
	if !ok {
		return nil, false
	}
	return core.Shape(info.Shape), true
}

func (s ckptSource) Load(name string) (core.HostTensor, error) { return s.c.Host(name) }
