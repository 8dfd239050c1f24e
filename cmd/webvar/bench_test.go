package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/webvar/webvar/core/bench"
)

func smallKernels(t *testing.T) []bench.Kernel {
	t.Helper()
	ks, err := bench.Kernels(bench.SizeSmall)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// The table has a header naming the backend and device, then one row per kernel ending in numbers.
func TestBenchKernelsTable(t *testing.T) {
	rc, stdout, stderr := runCLI(t, "bench", "-kernels", "-size", "small", "-backend", "cpu", "-reps", "2")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	if !strings.Contains(stdout, "backend cpu, size small: ") || !strings.Contains(stdout, "threads") {
		t.Errorf("no header naming the backend and device:\n%s", stdout)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = line
		}
	}
	if _, ok := rows["kernel"]; !ok {
		t.Errorf("no column header:\n%s", stdout)
	}
	for _, k := range smallKernels(t) {
		line, ok := rows[k.Name]
		if !ok {
			t.Errorf("no row for %s:\n%s", k.Name, stdout)
			continue
		}
		if !strings.Contains(line, k.Shape) {
			t.Errorf("%s: row %q lacks the shape %q", k.Name, line, k.Shape)
		}
		// The last five columns: GFLOP, MB, ms/run, GFLOP/s, GB/s ("-" where a kernel does no arithmetic).
		f := strings.Fields(line)
		for i, col := range f[len(f)-5:] {
			if col == "-" && k.FLOPs == 0 && (i == 0 || i == 3) {
				continue
			}
			v, err := strconv.ParseFloat(col, 64)
			if err != nil || v < 0 || (i == 2 && v <= 0) {
				t.Errorf("%s: column %d is %q in %q", k.Name, i, col, line)
			}
		}
	}
}

func TestBenchKernelsJSON(t *testing.T) {
	rc, stdout, stderr := runCLI(t, "bench", "-kernels", "-size", "small", "-backend", "cpu", "-reps", "1", "-json")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	ks := smallKernels(t)
	if len(lines) != len(ks) {
		t.Fatalf("%d lines, want one per kernel (%d):\n%s", len(lines), len(ks), stdout)
	}
	for i, line := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		for _, field := range []string{"backend", "device", "kernel", "shape", "flops", "bytes", "seconds", "gflops", "gbps"} {
			if _, ok := r[field]; !ok {
				t.Errorf("line %d lacks %q: %s", i, field, line)
			}
		}
		if r["backend"] != "cpu" || r["kernel"] != ks[i].Name || r["flops"] != float64(ks[i].FLOPs) {
			t.Errorf("line %d: %s, want kernel %s", i, line, ks[i].Name)
		}
		if s, _ := r["seconds"].(float64); !(s > 0) {
			t.Errorf("line %d: seconds %v", i, r["seconds"])
		}
	}
}

func TestBenchRejectsBadUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench"}, "end-to-end model benchmark is not built yet"},
		{[]string{"bench", "-kernels", "-size", "huge"}, "size"},
		{[]string{"bench", "-kernels", "-backend", "tpu"}, "-backend"},
		{[]string{"bench", "-kernels", "-filter", "no-such-kernel"}, "matches no kernel"},
		{[]string{"bench", "-kernels", "-reps", "-1"}, "-reps"},
	} {
		rc, _, stderr := runCLI(t, c.args...)
		if rc != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, rc, stderr, c.want)
		}
	}
}
