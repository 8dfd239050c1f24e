package flexvar_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/edit"
	"github.com/webvar/webvar/core/flexvar"
	"github.com/webvar/webvar/core/flexvar/flexvartest"
	"github.com/webvar/webvar/internal/testutil"
)

// FlexVAR image-to-image has no official code: it is checked by construction on flexvar-tiny (random
// weights), for a square schedule and a non-square one. A full keep-mask reproduces the input's
// reconstruction (its last step's tokens decoded) and keeps the input's tokens at every step; an empty one
// is plain generation; a box keeps exactly the positions its resized masks keep; refinement keeps the
// first steps whole and samples the rest.
func TestFlexVAREditByConstruction(t *testing.T) {
	b := cpu.New(0)
	f := testutil.Fixtures(t, "flexvar")[0]
	p := flexvartest.Load(t, f, b)
	for _, sched := range [][]flexvar.Grid{flexvar.Square([]int{1, 2, 3, 4}), {{H: 1, W: 1}, {H: 1, W: 2}, {H: 2, W: 3}, {H: 3, W: 5}}} {
		t.Run(fmt.Sprint(sched), func(t *testing.T) {
			o := core.NewOps(b)
			h, w := p.ImageSize(sched)
			// The input: a generated image of this schedule, as a user would edit one.
			base, err := p.Generate(context.Background(), b, flexvar.Request{Labels: []int{1}, Schedule: sched, CFG: 2, TopK: 20, Seed: 3}, nil)
			if err != nil {
				t.Fatal(err)
			}
			img := core.HostTensor{Shape: core.Shape{1, 3, h, w}, Data: make([]float32, 3*h*w)}
			for i, v := range base.Images.Data {
				img.Data[i] = 2*v - 1
			}
			last := sched[len(sched)-1]
			run := func(e *edit.Edit, label int, seed uint64) *flexvar.Result {
				t.Helper()
				res, err := p.Generate(context.Background(), b, flexvar.Request{Labels: []int{label, 2}, Schedule: sched, CFG: 2,
					TopK: 20, Seed: seed, Edit: e}, nil)
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			ones := make([]float32, last.N())
			for i := range ones {
				ones[i] = 1
			}
			full, err := p.EditOf(o, img, sched, ones, 0)
			if err != nil {
				t.Fatal(err)
			}
			res := run(full, 0, 11)
			for si, g := range sched {
				for img := range 2 {
					if got := res.Tokens[si][img*g.N() : (img+1)*g.N()]; !slices.Equal(got, full.Tokens[si]) {
						t.Fatalf("full mask, step %d image %d: tokens %v, the input's %v", si, img, got, full.Tokens[si])
					}
				}
			}
			rec := o.Download(p.VAE.Decode(o, full.Tokens[len(sched)-1], 1, last))
			for i, v := range rec.Data {
				if want := min(max((v+1)*0.5, 0), 1); res.Images.Data[i] != want {
					t.Fatalf("full mask: pixel %d = %v, the reconstruction's %v", i, res.Images.Data[i], want)
				}
			}
			// Empty mask: plain generation, token for token.
			empty, err := p.EditOf(o, img, sched, make([]float32, last.N()), 0)
			if err != nil {
				t.Fatal(err)
			}
			plain := run(nil, 0, 11)
			if got := run(empty, 0, 11); !slices.EqualFunc(got.Tokens, plain.Tokens, slices.Equal) {
				t.Fatalf("empty mask: tokens %v, plain generation %v", got.Tokens, plain.Tokens)
			}
			// A box kept (out-painting around it), towards the null class: kept positions are the
			// input's at every step, the others are sampled (some differ).
			box, err := p.EditOf(o, img, sched, edit.BoxMask(last.H, last.W, [4]float64{0, 0, 0.6, 0.6}, false), 0)
			if err != nil {
				t.Fatal(err)
			}
			res = run(box, p.VAR.Config().Classes, 5)
			kept, changed := 0, 0
			for si := range sched {
				for j, k := range box.Keep[si] {
					got := res.Tokens[si][j]
					if k {
						kept++
						if got != box.Tokens[si][j] {
							t.Fatalf("box, step %d: kept position %d has %d, the input's %d", si, j, got, box.Tokens[si][j])
						}
					} else if got != box.Tokens[si][j] {
						changed++
					}
				}
			}
			if kept == 0 || changed == 0 {
				t.Fatalf("box: %d kept, %d changed positions", kept, changed)
			}
			// Refinement: the first two steps whole, the rest sampled.
			ref, err := p.EditOf(o, img, sched, make([]float32, last.N()), 2)
			if err != nil {
				t.Fatal(err)
			}
			res = run(ref, 1, 7)
			for si := range 2 {
				if got := res.Tokens[si][:sched[si].N()]; !slices.Equal(got, ref.Tokens[si]) {
					t.Fatalf("refine: step %d tokens %v, the input's %v", si, got, ref.Tokens[si])
				}
			}
			// Bad edits are refused.
			if _, err := p.EditOf(o, core.HostTensor{Shape: core.Shape{1, 3, h + 16, w}, Data: make([]float32, 3*(h+16)*w)}, sched, ones, 0); err == nil {
				t.Error("an image of the wrong size was accepted")
			}
			if _, err := p.Generate(context.Background(), b, flexvar.Request{Labels: []int{1}, Schedule: sched[:3], Edit: full}, nil); err == nil {
				t.Error("an edit of another schedule was accepted")
			}
		})
	}
}
