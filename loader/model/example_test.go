package model_test

import (
	"context"
	"fmt"
	"log"
	"path/filepath"

	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/gen"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/loader/model"
	"github.com/webvar/webvar/weights/fashionvar"
)

// Generate a sneaker with the embedded demo model, one status line per scale.
func Example() {
	ctx := context.Background()
	m, err := model.OpenFS(ctx, fashionvar.FS(), model.Options{})
	if err != nil {
		log.Fatal(err)
	}
	res, err := m.Generate(ctx, gen.Request{Labels: []int{7}, Seed: 3}, func(s gen.Step) error {
		fmt.Println(s.Label)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	img, err := core.ToImage(res.Images, 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.ClassNames[7], img.Bounds().Size())
	// Output:
	// scale 1/7 (1x1)
	// scale 2/7 (2x2)
	// scale 3/7 (3x3)
	// scale 4/7 (4x4)
	// scale 5/7 (5x5)
	// scale 6/7 (6x6)
	// scale 7/7 (8x8)
	// Sneaker (32,32)
}

// Official FlexVAR checkpoints (here the test fixture's): any step schedule and aspect ratio, chosen per
// request by setting name. A 7-token side is not among the sides FlexVAR was trained on, so that step is
// greedy, as the official sampler rules.
func ExampleOpenCheckpoints() {
	dir := filepath.Join(testutil.Root(), "testdata", "flexvar-tiny")
	m, err := model.OpenCheckpoints(filepath.Join(dir, "var.pth"), filepath.Join(dir, "vae.pth"), model.Options{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Info().Family)
	req := gen.Request{Labels: []int{3}, Settings: gen.Settings{"schedule": "1,2,3,5", "aspect": "16:9", "top-k": "1"}}
	res, err := m.Generate(context.Background(), req, func(s gen.Step) error {
		fmt.Println(s.Label)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Images.Shape)
	// Output:
	// flexvar
	// step 1/4 (1x1)
	// step 2/4 (2x3)
	// step 3/4 (2x4)
	// step 4/4 (4x7), greedy
	// [1, 3, 64, 112]
}
