package cpu

import (
	"strconv"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
)

func TestEmbedding(t *testing.T) {
	be := testBackend()
	table, tv := randTensor(t, be, newRand(19), 5, 3)
	ids := []int{4, 0, 0, 2}
	got := download(t, be, must(t)(be.Embedding(table, ids)), core.Shape{4, 3})
	var want []float32
	for _, id := range ids {
		want = append(want, tv[id*3:(id+1)*3]...)
	}
	testutil.AbsClose(t, "embedding", got, want, 0)

	for _, bad := range []int{5, -1} {
		_, err := be.Embedding(table, []int{0, bad})
		if err == nil || !strings.Contains(err.Error(), "id "+strconv.Itoa(bad)) {
			t.Errorf("id %d: error %v, want one naming the id", bad, err)
		}
	}
}

func TestNearestCode(t *testing.T) {
	be := testBackend()
	r := newRand(20)
	const N, V, C = 50, 37, 8
	z, zv := randTensor(t, be, r, N, C)
	e, ev := randTensor(t, be, r, V, C)
	got, err := be.NearestCode(z, e)
	if err != nil {
		t.Fatal(err)
	}
	// Reference: the plain squared distance in float64. Random data has no near ties, so both agree.
	for n := range N {
		best, bestD := -1, 0.0
		for v := range V {
			var d float64
			for c := range C {
				diff := float64(zv[n*C+c]) - float64(ev[v*C+c])
				d += diff * diff
			}
			if best < 0 || d < bestD {
				best, bestD = v, d
			}
		}
		if got[n] != best {
			t.Errorf("row %d: code %d, want %d", n, got[n], best)
		}
	}

	// Exact ties: duplicated codebook rows; the first index must win.
	dup := upload(t, be, core.Shape{3, 2}, []float32{1, 1, 0, 0, 1, 1})
	ids, err := be.NearestCode(upload(t, be, core.Shape{2, 2}, []float32{0.9, 1.1, 5, 5}), dup)
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != 0 || ids[1] != 0 {
		t.Errorf("ties resolved to %v, want [0 0]", ids)
	}
}
