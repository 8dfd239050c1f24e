package convert

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/webvar/webvar/core/cpu"
	"github.com/webvar/webvar/core/family"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/weights"
)

// Every VAR and FlexVAR fixture (the official ones and the bundled variants: shared AdaLN, plain
// attention whose head count no tensor says) converts at f32 with the options only the checkpoint
// cannot say (patch_nums, heads) and loads back with none: the directory records them, and its greedy
// run gives the golden tokens.
func TestConvertedFixturesLoadWithoutOptions(t *testing.T) {
	for _, fam := range []string{"var", "flexvar"} {
		for _, f := range testutil.Fixtures(t, fam) {
			t.Run(f.Name, func(t *testing.T) {
				c := testutil.ReadVARConfig(t, f)
				dir := filepath.Join(t.TempDir(), "w")
				opt := ConvertOptions{Quant: weights.F32, PatchNums: c.PatchNums, Heads: c.NumHeads}
				if _, err := Convert(f.Path("var.pth"), f.Path("vae.pth"), dir, opt); err != nil {
					t.Fatal(err)
				}
				m, err := weights.Load(context.Background(), weights.DirSource(dir), weights.LoadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				g, err := LoadGenerator(m, cpu.New(0), family.Options{})
				if err != nil {
					t.Fatal(err)
				}
				gold := testutil.OpenGolden(t, f.Path("golden.safetensors"))
				settings := gen.Settings{"cfg": fmt.Sprint(gold.F32("ar0.cfg").Data[0]), "top-k": "1"}
				if fam == "flexvar" {
					settings["schedule"] = gen.JoinInts(gold.Ints("ar0.schedule"))
					settings["max-pn"] = fmt.Sprint(gold.Ints("ar0.max_pn")[0])
					if gold.Ints("ar0.used_llamagen_cfg")[0] != 0 {
						settings["cfg-mode"] = "llamagen"
					}
				}
				res, err := g.Generate(context.Background(), gen.Request{Labels: gold.Ints("ar0.label_B"), Settings: settings}, nil)
				if err != nil {
					t.Fatal(err)
				}
				for si := range res.Tokens {
					name := fmt.Sprintf("ar0.idx.s%d", si)
					testutil.IntsEqual(t, name, res.Tokens[si], gold.Ints(name))
				}
			})
		}
	}
}
