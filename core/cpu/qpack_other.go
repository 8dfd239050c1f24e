//go:build !amd64 || purego

package cpu

import "github.com/webvar/webvar/core"

// fastUnpack is nil: qpacked panels are unpacked by the plain-Go code.
var fastUnpack func(scheme core.QuantScheme, kc int, codes []byte, scales, panel []float32) int
