package nn

import (
	"strconv"
	"strings"

	"github.com/webvar/webvar/core"
)

// CountBlocks is the number of numbered modules under prefix in src: one more than the largest N of any
// key prefix.N.*. Counting any key, not one chosen tensor per block, lets a checkpoint that lacks one of
// a block's tensors be reported by that tensor's name (tensortable.Table.Check) instead of read as a
// shallower model whose last block is unknown keys.
func CountBlocks(src core.WeightSource, prefix string) int {
	n := 0
	for _, name := range src.Names() {
		rest, ok := strings.CutPrefix(name, prefix+".")
		if !ok {
			continue
		}
		idx, _, ok := strings.Cut(rest, ".")
		if i, err := strconv.Atoi(idx); ok && err == nil && i >= 0 {
			n = max(n, i+1)
		}
	}
	return n
}

// hasShape reports whether src holds the tensor.
func hasShape(src core.WeightSource, name string) bool {
	_, ok := src.Shape(name)
	return ok
}
