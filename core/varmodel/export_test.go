package varmodel

import (
	"github.com/webvar/webvar/core"
	"github.com/webvar/webvar/core/nn"
)

// Condition exposes the class conditioning to the external tests (random_test.go, which imports
// internal/randmodel and so cannot be in package varmodel).
func Condition(m *Model, o *core.Ops, labels []int) (*core.Tensor, *nn.Modulations) {
	return m.condition(o, labels)
}
