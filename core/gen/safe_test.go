package gen

import (
	"errors"
	"strings"
	"testing"
)

func TestSafely(t *testing.T) {
	want := &Result{}
	if res, err := Safely(func() (*Result, error) { return want, nil }); res != want || err != nil {
		t.Fatalf("plain run: %v, %v", res, err)
	}
	boom := errors.New("boom")
	if _, err := Safely(func() (*Result, error) { return nil, boom }); err != boom {
		t.Fatalf("failing run: %v", err)
	}
	res, err := Safely(func() (*Result, error) { panic("getMappedRange failed") })
	var pe *PanicError
	if res != nil || !errors.As(err, &pe) || err.Error() != "internal error in the generation: getMappedRange failed" ||
		!strings.Contains(string(pe.Stack), "TestSafely") {
		t.Fatalf("panicking run: %v, %v", res, err)
	}
}
