// Package tensortable is the family-neutral description of a model's checkpoint: one Spec per tensor of
// the official key layout, its shape computed from the architecture config, whether it is a Linear
// weight that may be stored quantized, and how generation applies it (for FLOP counting). Each family's
// engine package builds its table from its config (varmodel.Tensors, flexvar.Tensors, ...); config
// inference checks the checkpoint against it, the converter quantizes what it marks, the random
// benchmark models are drawn from it and the benchmarks count its Linear products.
//
// A table lists what a model reads. Buffers the official checkpoints carry but the models derive (VAR's
// lvl_1L and attn_bias_for_masking) are not in it: family.Family lists them as skipped.
package tensortable

import (
	"fmt"
	"slices"

	"github.com/webvar/webvar/core"
)

// Use says how generation applies a tensor, for FLOP counting. What a "step" and a "row" are is the
// family's: a VAR-style transformer runs one step per scale on 2 rows per image (conditional and null
// class), a MAR one per iteration.
type Use int

const (
	// Uncounted is a tensor FLOP counting does not read from the table: not a matrix product's weight
	// (embeddings, positions, norms, biases, per-head scales), or one of a family that counts its
	// arithmetic itself (MAR and RQ: their Pipeline.FLOPs).
	Uncounted Use = iota
	// PerToken is a Linear applied to every token of every step, on every row.
	PerToken
	// PerClass is a Linear applied once per generation to each row's class condition (the AdaLN
	// modulations).
	PerClass
	// PerInput is a Linear applied to every token of the next step's input, on the conditional rows only
	// (VAR's word_embed).
	PerInput
)

// Spec is one checkpoint tensor.
type Spec struct {
	Name  string
	Shape []int
	// Quantizable marks a Linear weight ([out, in]) that only Linear consumes: it may be stored
	// quantized (core.Weights.LinearWeight).
	Quantizable bool
	Use         Use
	// Calls is how often generation applies the tensor per row and Use when more than once (0 means
	// once): VAR-d36's shared AdaLN linear serves every block, each with its own bias.
	Calls int
}

// Numel is the element count of the tensor.
func (s Spec) Numel() int64 {
	n := int64(1)
	for _, d := range s.Shape {
		n *= int64(d)
	}
	return n
}

// Table is a family's tensors for one config, in the official module order.
type Table []Spec

// Find returns the spec of a tensor.
func (t Table) Find(name string) (Spec, bool) {
	for _, s := range t {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Names lists the tensors' names in table order.
func (t Table) Names() []string {
	out := make([]string, len(t))
	for i, s := range t {
		out[i] = s.Name
	}
	return out
}

// Quantizer returns the table's quantizability as a function of the name (false for names not in the
// table), for callers that test many names.
func (t Table) Quantizer() func(name string) bool {
	q := make(map[string]bool)
	for _, s := range t {
		if s.Quantizable {
			q[s.Name] = true
		}
	}
	return func(name string) bool { return q[name] }
}

// MACs is the multiply-adds of applying every tensor of the given use once per row and token: the sum
// of the weights' element counts (out x in), times their Calls.
func (t Table) MACs(u Use) int64 {
	var n int64
	for _, s := range t {
		if s.Use == u {
			n += s.Numel() * int64(max(1, s.Calls))
		}
	}
	return n
}

// Check verifies that src holds every tensor of the table with exactly the table's shape. The error is
// a *core.WeightError naming the first tensor (in table order) that is missing or has another shape,
// with the expected and the actual shape.
func (t Table) Check(src core.WeightSource) error {
	for _, s := range t {
		got, ok := src.Shape(s.Name)
		if !ok {
			return &core.WeightError{Tensor: s.Name, Msg: fmt.Sprintf("missing from checkpoint (want shape %v)", s.Shape)}
		}
		if !slices.Equal([]int(got), s.Shape) {
			return &core.WeightError{Tensor: s.Name, Msg: fmt.Sprintf("shape %v, want %v", []int(got), s.Shape)}
		}
	}
	return nil
}

// Validate reports a table that names a tensor twice or has a non-positive dimension: a family's table
// function with a bug, or a config no model can have.
func (t Table) Validate() error {
	seen := make(map[string]bool, len(t))
	for _, s := range t {
		if seen[s.Name] {
			return fmt.Errorf("tensor table: %q listed twice", s.Name)
		}
		seen[s.Name] = true
		for _, d := range s.Shape {
			if d <= 0 {
				return fmt.Errorf("tensor table: %s has shape %v", s.Name, s.Shape)
			}
		}
		if s.Quantizable && len(s.Shape) != 2 {
			return fmt.Errorf("tensor table: quantizable %s has shape %v, want [out, in]", s.Name, s.Shape)
		}
	}
	return nil
}
