package core_test

import (
	"math"
	"testing"

	"github.com/webvar/webvar/core"
)

// TestPSNR: identical images are +Inf dB; a uniform error of 0.1 (MSE 0.01) is 20 dB.
func TestPSNR(t *testing.T) {
	a := []float32{0.2, 0.5, 0.9, 0}
	if got := core.PSNR(a, a); !math.IsInf(got, 1) {
		t.Errorf("PSNR of identical images = %v, want +Inf", got)
	}
	b := []float32{0.3, 0.4, 1.0, 0.1}
	if got := core.PSNR(a, b); math.Abs(got-20) > 1e-5 {
		t.Errorf("PSNR with error 0.1 everywhere = %v dB, want 20", got)
	}
}
