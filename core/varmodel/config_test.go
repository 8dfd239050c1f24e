package varmodel

import (
	"fmt"
	"testing"
)

func TestResolvePatchNums(t *testing.T) {
	cases := []struct {
		l, scales, firstL int
		explicit          []int
		want              string // "" = error
	}{
		{680, 10, 1, nil, "[1 2 3 4 5 6 8 10 13 16]"},
		{2240, 10, 1, nil, "[1 2 3 4 6 9 13 18 24 32]"},
		{30, 4, 1, nil, "[1 2 3 4]"},
		{30, 3, 1, nil, "[1 2 5]"},
		{30, 4, 1, []int{1, 2, 3, 4}, "[1 2 3 4]"},
		{30, 4, 1, []int{1, 2, 3, 5}, ""}, // wrong L
		{30, 4, 1, []int{1, 3, 2, 4}, ""}, // not increasing
		{91, 6, 1, nil, "[1 2 3 4 5 6]"},
		{1 + 4 + 9 + 16 + 36, 5, 1, nil, ""}, // 1,2,3,4,6 vs other lists: ambiguous or not, must be explicit if so
	}
	for _, c := range cases {
		got, err := resolvePatchNums(c.l, c.scales, c.firstL, c.explicit)
		switch {
		case c.want == "" && err == nil:
			if c.explicit != nil {
				t.Errorf("L=%d %v: accepted %v", c.l, c.explicit, got)
			} else if len(findPatchNums(c.l, c.scales, c.firstL, 2)) != 1 {
				t.Errorf("L=%d: inferred %v from an ambiguous L", c.l, got)
			}
		case c.want != "" && err != nil:
			t.Errorf("L=%d scales=%d: %v", c.l, c.scales, err)
		case c.want != "" && fmt.Sprint(got) != c.want:
			t.Errorf("L=%d scales=%d: %v, want %s", c.l, c.scales, got, c.want)
		}
	}
}

// maskTopKTopPBySorting is the straightforward statement of the filter (sort the whole row for the k-th
// largest, stable-sort every index for top-p): maskTopKTopP must give exactly its result.
