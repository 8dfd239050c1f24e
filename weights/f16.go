package weights

import "github.com/webvar/webvar/core"

// RoundF16 is x stored as f16 and read back, and false when x is outside f16's finite range (the
// converter measures the error f16 storage would introduce with it).
func RoundF16(x float32) (float32, bool) {
	h, ok := core.F32ToF16(x)
	if !ok {
		return x, false
	}
	return core.F16ToF32(h), true
}
