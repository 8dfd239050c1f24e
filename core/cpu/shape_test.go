package cpu

import (
	"fmt"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/internal/testutil"
)

// at returns the flat row-major index of idx in shape.
func at(shape core.Shape, idx ...int) int {
	flat := 0
	for i, d := range shape {
		flat = flat*d + idx[i]
	}
	return flat
}

func TestConcatEachAxis(t *testing.T) {
	be := testBackend()
	r := newRand(13)
	base := core.Shape{2, 3, 4}
	for axis := range 3 {
		for _, a := range []int{axis, axis - 3} { // positive and negative spelling of the same axis
			t.Run(fmt.Sprintf("axis%d", a), func(t *testing.T) {
				// Three inputs of sizes 1, 2 and 3 along axis.
				var ins []*core.Tensor
				var vals [][]float32
				var shapes []core.Shape
				for n := 1; n <= 3; n++ {
					s := base.Clone()
					s[axis] = n
					x, v := randTensor(t, be, r, s...)
					ins, vals, shapes = append(ins, x), append(vals, v), append(shapes, s)
				}
				outShape := base.Clone()
				outShape[axis] = 6
				got := download(t, be, must(t)(be.Concat(a, ins...)), outShape)
				for i := range outShape[0] {
					for j := range outShape[1] {
						for k := range outShape[2] {
							idx := []int{i, j, k}
							src, off := 0, idx[axis] // find the input holding idx[axis]
							for off >= shapes[src][axis] {
								off -= shapes[src][axis]
								src++
							}
							idx2 := append([]int(nil), idx...)
							idx2[axis] = off
							if g, w := got[at(outShape, idx...)], vals[src][at(shapes[src], idx2...)]; g != w {
								t.Fatalf("out%v = %v, want %v (input %d)", idx, g, w, src)
							}
						}
					}
				}
			})
		}
	}
}

func TestTranspose12(t *testing.T) {
	be := testBackend()
	const A, M, N = 3, 5, 7
	x, xv := randTensor(t, be, newRand(14), A, M, N)
	got := download(t, be, must(t)(be.Transpose12(x)), core.Shape{A, N, M})
	for a := range A {
		for m := range M {
			for n := range N {
				if g, w := got[(a*N+n)*M+m], xv[(a*M+m)*N+n]; g != w {
					t.Fatalf("y[%d,%d,%d] = %v, want %v", a, n, m, g, w)
				}
			}
		}
	}
}

func TestSliceLast(t *testing.T) {
	be := testBackend()
	x, xv := randTensor(t, be, newRand(15), 2, 3, 10)
	got := download(t, be, must(t)(be.SliceLast(x, 3, 4)), core.Shape{2, 3, 4})
	var want []float32
	for row := range 6 {
		want = append(want, xv[row*10+3:row*10+7]...)
	}
	testutil.AbsClose(t, "slice", got, want, 0)
}
