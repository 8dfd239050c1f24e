package tensortable

import (
	"errors"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
)

func TestCheckNamesTheTensorAndBothShapes(t *testing.T) {
	table := Table{{Name: "a.weight", Shape: []int{4, 3}, Quantizable: true, Use: PerToken}, {Name: "a.bias", Shape: []int{4}}}
	src := core.MapSource{"a.weight": {Shape: core.Shape{4, 3}, Data: make([]float32, 12)}, "a.bias": {Shape: core.Shape{4}, Data: make([]float32, 4)}}
	if err := table.Check(src); err != nil {
		t.Fatal(err)
	}
	src["a.bias"] = core.HostTensor{Shape: core.Shape{5}, Data: make([]float32, 5)}
	var we *core.WeightError
	if err := table.Check(src); !errors.As(err, &we) || we.Tensor != "a.bias" || !strings.Contains(err.Error(), "shape [5], want [4]") {
		t.Errorf("misshapen: %v", err)
	}
	delete(src, "a.weight")
	if err := table.Check(src); !errors.As(err, &we) || we.Tensor != "a.weight" || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing: %v", err)
	}
}

func TestMACsQuantizerValidate(t *testing.T) {
	table := Table{
		{Name: "shared.weight", Shape: []int{6, 2}, Quantizable: true, Use: PerClass, Calls: 3},
		{Name: "qkv.weight", Shape: []int{6, 2}, Quantizable: true, Use: PerToken},
		{Name: "head.weight", Shape: []int{5, 2}, Quantizable: true, Use: PerToken},
		{Name: "emb", Shape: []int{7, 2}},
	}
	if got := table.MACs(PerToken); got != 22 {
		t.Errorf("PerToken MACs %d, want 22", got)
	}
	if got := table.MACs(PerClass); got != 36 {
		t.Errorf("PerClass MACs %d, want 36 (3 calls of 6x2)", got)
	}
	q := table.Quantizer()
	if !q("qkv.weight") || q("emb") || q("other") {
		t.Error("Quantizer disagrees with the table")
	}
	if err := table.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Table{append(table, table[0]), {{Name: "x", Shape: []int{0}}}, {{Name: "x", Shape: []int{2}, Quantizable: true}}} {
		if bad.Validate() == nil {
			t.Errorf("%v validated", bad)
		}
	}
}
