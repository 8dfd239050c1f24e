package flexvar

import (
	"fmt"
	"testing"
)

func TestSchedulePresetsAreValid(t *testing.T) {
	for _, def := range [][]int{DefaultSchedule, {1, 2, 3, 4, 5, 6, 8}, {1, 2, 3, 4}, {1, 2}} {
		ps := SchedulePresets(def)
		for _, p := range ps {
			if err := CheckSchedule(Square(splitInts(p))); err != nil {
				t.Errorf("%v: preset %q: %v", def, p, err)
			}
		}
	}
	if got := SchedulePresets(DefaultSchedule); fmt.Sprint(got) != "[1,2,3,4,5,6,8,10,13,16 1,3,5,8,13,16 1,2,3,4,5,6,7,8,9,10,12,13,14,16 1,2,3,4,5,6,8,10,13,16,23,32]" {
		t.Errorf("presets of the default schedule: %v", got)
	}
}

func splitInts(s string) []int {
	var out []int
	n, in := 0, false
	for _, r := range s + "," {
		if r == ',' {
			if in {
				out = append(out, n)
			}
			n, in = 0, false
			continue
		}
		n, in = n*10+int(r-'0'), true
	}
	return out
}

func TestAspectSchedule(t *testing.T) {
	s, err := Aspect([]int{1, 2, 3, 5}, 16, 9)
	if err != nil || fmt.Sprint(s) != "[1 2x3 2x4 4x7]" {
		t.Fatalf("16:9 of 1,2,3,5: %v %v", s, err)
	}
	if _, err := Aspect([]int{1, 2, 3}, 0, 9); err == nil {
		t.Error("aspect 0:9 accepted")
	}
	if _, _, err := ParseAspect("wide"); err == nil {
		t.Error("aspect \"wide\" parsed")
	}
}
