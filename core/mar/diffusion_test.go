package mar_test

import (
	"math"
	"strings"
	"testing"

	"github.com/webvar/webvar/core/mar"
)

// TestScheduleStepCounts: every step count from 2 to mar.TrainSteps gives a finite schedule; 0, 1 and more
// than mar.TrainSteps are refused by name (1 step once gave NaN latents: its variance table is empty).
func TestScheduleStepCounts(t *testing.T) {
	for _, n := range []int{0, 1, mar.TrainSteps + 1} {
		if _, err := mar.NewSchedule(n); err == nil || !strings.Contains(err.Error(), "diffusion steps") {
			t.Errorf("NewSchedule(%d): err %v, want one naming the diffusion steps", n, err)
		}
	}
	for _, n := range []int{2, 3, 10, 100, 250, mar.TrainSteps} {
		s, err := mar.NewSchedule(n)
		if err != nil {
			t.Fatalf("NewSchedule(%d): %v", n, err)
		}
		if s.Steps() != n {
			t.Errorf("NewSchedule(%d) has %d steps", n, s.Steps())
		}
		for name, tab := range map[string][]float64{"betas": s.Betas, "posterior log variance": s.PosteriorLogVarClipped,
			"mean coef 1": s.PosteriorMeanCoef1, "mean coef 2": s.PosteriorMeanCoef2, "log betas": s.LogBetas} {
			for i, v := range tab {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("NewSchedule(%d): %s[%d] = %v", n, name, i, v)
				}
			}
		}
	}
}
