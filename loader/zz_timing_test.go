package loader

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestZZTiming(t *testing.T) {
	dir := os.Getenv("CORPUS")
	ents, _ := os.ReadDir(dir)
	var worst time.Duration
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		lines := strings.SplitN(string(b), "\n", 3)
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatal(err)
		}
		st := time.Now()
		data := []byte(s)
		readAll(t, data)
		if obj, err := unpickle(data); err == nil {
			if items, err := stateDict(obj); err == nil {
				storages := map[string][]byte{}
				for _, it := range items {
					st := it.ref.storage
					n := st.numel * int64(st.dtype.itemSize())
					if n > 1<<20 {
						break
					}
					storages[st.key] = make([]byte, n)
				}
				if z, ok := tryBuildPTH(data, storages); ok {
					readAll(t, z)
				}
			}
		}
		d := time.Since(st)
		worst = max(worst, d)
		if d > 5*time.Millisecond {
			t.Logf("%s: %d bytes, %v", e.Name(), len(s), d)
		}
	}
	t.Log(len(ents), "inputs, worst", worst)
}
