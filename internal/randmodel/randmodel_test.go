package randmodel

import (
	"fmt"
	"math"
	"testing"

	"github.com/webvar/webvar/core/varmodel"
)

// The official lists must read back as the released architecture (shapes only: nothing is drawn), and
// the lazy source must serve the values Map draws, whatever the order of loads.
func TestOfficialShapesAndLazyValues(t *testing.T) {
	vs, as := Official(16)
	src, err := NewSource(VARTensors(vs), SeedVAR)
	if err != nil {
		t.Fatal(err)
	}
	c, err := varmodel.InferConfig(src, varmodel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Depth != 16 || c.C != 1024 || c.Heads != 16 || c.FFN != 4096 || c.V != 4096 || c.Cvae != 32 || c.Classes != 1000 ||
		!c.L2NormAttn || c.L != 680 || fmt.Sprint(c.PatchNums) != "[1 2 3 4 5 6 8 10 13 16]" {
		t.Fatalf("VAR-d16 config %+v", c)
	}
	small := VAESpec{Ch: 32, Mult: []int{1, 2}, NumRes: 1, V: 16, Cvae: 4, Scales: 3, Phi: as.Phi, PhiCount: 4, Encoder: true}
	ts := VAETensors(small)
	lazy, err := NewSource(ts, 7)
	if err != nil {
		t.Fatal(err)
	}
	eager := Map(ts, 7)
	names := lazy.Names()
	for i := len(names) - 1; i >= 0; i-- { // reverse order: values must not depend on it
		a, err := lazy.Load(names[i])
		if err != nil {
			t.Fatal(err)
		}
		b := eager[names[i]]
		if !a.Shape.Equal(b.Shape) || fmt.Sprint(a.Data) != fmt.Sprint(b.Data) {
			t.Fatalf("%s: lazy and eager values differ", names[i])
		}
		for _, v := range a.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: non-finite value", names[i])
			}
		}
	}
	if _, err := NewSource(append(ts, ts[0]), 1); err == nil {
		t.Fatal("duplicate name accepted")
	}
}
