package rq_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/core/rq"
	"github.com/webvar/webvar/core/rq/rqtest"
	"github.com/webvar/webvar/internal/testutil"
)

func tinyGenerator(t *testing.T) (*rq.Pipeline, gen.Generator) {
	t.Helper()
	b := cpu.New(1)
	p, err := rq.LoadRelease(rqTiny(""), b, rq.ReleaseOptions{Open: rqtest.Open})
	if err != nil {
		t.Fatal(err)
	}
	return p, p.Generator(b, rq.Defaults{})
}

// The generator: its description and settings, one event per position in order with the position's codes
// and a preview, the official greedy codes and image through the family-neutral API.
func TestRQGenerator(t *testing.T) {
	_, g := tinyGenerator(t)
	info := g.Info()
	if info.Family != "rq" || info.Classes != 10 || info.StepNoun != "position" || info.Steps != 16 || !info.Reroll || info.RandomAfter {
		t.Errorf("info %+v", info)
	}
	t.Log(info.Summary)
	def := map[string]string{}
	for _, s := range g.Settings() {
		def[s.Name] = s.Default
	}
	if def["temperature"] != "1" || def["top-k"] != "128" || def["top-p"] != "0.92" || len(def) != 3 {
		t.Errorf("defaults %v", def)
	}
	if h, w, err := g.ImageSize(nil); err != nil || h != 32 || w != 32 {
		t.Errorf("image size %dx%d %v", h, w, err)
	}

	gold := testutil.OpenGolden(t, rqTiny("golden.safetensors"))
	var events []gen.Step
	req := gen.Request{Labels: gold.Ints("ar.cond"), Settings: gen.Settings{"top-k": "1"}, Previews: true}
	res, err := g.Generate(context.Background(), req, func(s gen.Step) error {
		events = append(events, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 16 || len(res.Tokens) != 16 {
		t.Fatalf("%d events, %d token steps, want 16", len(events), len(res.Tokens))
	}
	var flat []int
	for i, ev := range events {
		if ev.Index != i || ev.Count != 16 || ev.Label != fmt.Sprintf("position %d/16", i+1) || ev.GridH != 4 || ev.GridW != 4 {
			t.Errorf("event %d: %+v", i, ev)
		}
		if !slices.Equal(ev.Tokens, res.Tokens[i]) || len(ev.Tokens) != 2*4 {
			t.Errorf("event %d tokens %v, result %v", i, ev.Tokens, res.Tokens[i])
		}
		if ev.Preview == nil || !ev.Preview.Shape.Equal(res.Images.Shape) {
			t.Fatalf("event %d: preview %v", i, ev.Preview)
		}
		for _, v := range ev.Preview.Data {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("event %d: preview value %v outside [0, 1]", i, v)
			}
		}
	}
	// Result.Tokens are per position, image-major: back to the (B, H, W, D) order of the golden codes.
	for b := range 2 {
		for i := range 16 {
			flat = append(flat, res.Tokens[i][b*4:(b+1)*4]...)
		}
	}
	testutil.IntsEqual(t, "ar.codes", flat, gold.Ints("ar.codes"))
	testutil.RelClose(t, "ar.img01", res.Images.Data, gold.F32("ar.img01").Data, 1e-4)
	if !slices.Equal(events[15].Preview.Data, res.Images.Data) {
		t.Error("the last event's preview is not the final image")
	}
	// The preview before the last position differs from the final image only where the last position is.
	if slices.Equal(events[14].Preview.Data, res.Images.Data) {
		t.Error("the preview at position 15 is the final image")
	}
}

// Sampling is reproducible from the seed; a prefix of an earlier result's steps (reroll from position k)
// keeps those positions and samples the rest anew.
func TestRQGeneratorSeedAndReroll(t *testing.T) {
	_, g := tinyGenerator(t)
	run := func(seed uint64, prefix [][]int, settings gen.Settings) *gen.Result {
		res, err := g.Generate(context.Background(), gen.Request{Labels: []int{3, 7}, Seed: seed, Prefix: prefix, Settings: settings}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	hot := gen.Settings{"temperature": "2"}
	a, b := run(5, nil, hot), run(5, nil, hot)
	for i := range a.Tokens {
		if !slices.Equal(a.Tokens[i], b.Tokens[i]) {
			t.Fatalf("seed 5 twice: position %d differs", i)
		}
	}
	c := run(6, nil, hot)
	same := true
	for i := range a.Tokens {
		same = same && slices.Equal(a.Tokens[i], c.Tokens[i])
	}
	if same {
		t.Error("seeds 5 and 6 gave the same codes at temperature 2")
	}
	r := run(6, a.Tokens[:5], hot)
	for i := range 5 {
		if !slices.Equal(r.Tokens[i], a.Tokens[i]) {
			t.Errorf("kept position %d changed", i)
		}
	}
	later := false
	for i := 5; i < 16; i++ {
		later = later || !slices.Equal(r.Tokens[i], a.Tokens[i])
	}
	if !later {
		t.Error("a reroll with another seed sampled the same later positions")
	}
	// Nucleus sampling at the default settings runs and stays within the vocabulary.
	for _, step := range run(1, nil, nil).Tokens {
		for _, id := range step {
			if id < 0 || id >= 128 {
				t.Fatalf("code %d", id)
			}
		}
	}
}

func TestRQGeneratorBadRequests(t *testing.T) {
	_, g := tinyGenerator(t)
	for _, c := range []struct {
		req  gen.Request
		want string
	}{
		{gen.Request{Labels: []int{10}}, "class 10"},
		{gen.Request{Labels: nil}, "no labels"},
		{gen.Request{Labels: []int{1}, RandomAfter: 3}, "random-after"},
		{gen.Request{Labels: []int{1}, Settings: gen.Settings{"cfg": "2"}}, "unknown setting"},
		{gen.Request{Labels: []int{1}, Settings: gen.Settings{"temperature": "0"}}, "temperature"},
		{gen.Request{Labels: []int{1}, Settings: gen.Settings{"top-p": "1.5"}}, "top-p"},
		{gen.Request{Labels: []int{1}, Prefix: [][]int{{1, 2, 3}}}, "prefix position 0"},
		{gen.Request{Labels: []int{1}, Prefix: [][]int{{1, 2, 3, 128}}}, "code 128"},
	} {
		_, err := g.Generate(context.Background(), c.req, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", c.req, err, c.want)
		}
	}
	// Cancellation stops between positions.
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := g.Generate(ctx, gen.Request{Labels: []int{1}}, func(s gen.Step) error {
		n++
		if n == 3 {
			cancel()
		}
		return nil
	})
	if err == nil || n != 3 {
		t.Errorf("cancelled at position 3: %v after %d events", err, n)
	}
}

// The depth view: the first k code depths of a finished image, decoded. All D depths are the generated
// image bit for bit; fewer are decode_partial_code's 'add' of the same codes, a different image; k outside
// 1..D is an error.
func TestRQGeneratorDepths(t *testing.T) {
	b := cpu.New(1)
	p, err := rq.LoadRelease(rqTiny(""), b, rq.ReleaseOptions{Open: rqtest.Open})
	if err != nil {
		t.Fatal(err)
	}
	g := p.Generator(b, rq.Defaults{})
	dv, ok := g.(gen.DepthViewer)
	if !ok {
		t.Fatal("the RQ generator is not a gen.DepthViewer")
	}
	D := dv.Depths()
	if D != p.M.Config().D || D < 2 {
		t.Fatalf("Depths() %d, config D %d", D, p.M.Config().D)
	}
	res, err := g.Generate(context.Background(), gen.Request{Labels: []int{3, 7}, Seed: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	full, err := dv.DecodeDepths(res, D)
	if err != nil {
		t.Fatal(err)
	}
	if !full.Shape.Equal(res.Images.Shape) || !slices.Equal(full.Data, res.Images.Data) {
		t.Fatalf("all %d depths: %v, not the generated image %v bit for bit", D, full.Shape, res.Images.Shape)
	}
	// The reference: the code map rebuilt from Result.Tokens (per position, B*D ids image-major).
	c := p.M.Config()
	codes := rq.NewCodes(2, c.H, c.W, D)
	for pos, ids := range res.Tokens {
		for b := range 2 {
			for d := range D {
				codes.IDs[codes.At(b, pos, d)] = ids[b*D+d]
			}
		}
	}
	o := core.NewOps(b)
	for k := 1; k < D; k++ {
		got, err := dv.DecodeDepths(res, k)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(got.Data, res.Images.Data) {
			t.Errorf("depths 1..%d: the same image as all %d", k, D)
		}
		ref := o.Download(p.V.DecodePartial(o, codes, k-1, rq.SumFirst))
		if err := o.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Data, rq.ToUnit(ref).Data) {
			t.Errorf("depths 1..%d differ from DecodePartial(%d, SumFirst)", k, k-1)
		}
	}
	for _, k := range []int{0, -1, D + 1} {
		if _, err := dv.DecodeDepths(res, k); err == nil || !strings.Contains(err.Error(), "depths") {
			t.Errorf("k = %d: error %v", k, err)
		}
	}
	if _, err := dv.DecodeDepths(&gen.Result{Tokens: res.Tokens[:3]}, 1); err == nil {
		t.Error("3 positions of 16 decoded")
	}
	bad := slices.Clone(res.Tokens)
	bad[0] = []int{1, 2, 3, 1000, 0, 0, 0, 0}
	if _, err := dv.DecodeDepths(&gen.Result{Tokens: bad}, 1); err == nil {
		t.Error("code 1000 decoded")
	}
}
