package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/webvar/webvar/core/bench"
	"github.com/webvar/webvar/internal/testutil"
	"github.com/webvar/webvar/weights"
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
		{[]string{"bench"}, "give -kernels"},
		{[]string{"bench", "-kernels", "-model", "tiny"}, "separate benchmarks"},
		{[]string{"bench", "-model", "d99"}, "-model"},
		{[]string{"bench", "-model", "tiny", "-weights", "dir"}, "either -model or -weights"},
		{[]string{"bench", "-weights", "dir", "-quant", "int8"}, "keeps the quantization"},
		{[]string{"bench", "-model", "tiny", "-quant", "f16"}, "-quant"},
		{[]string{"bench", "-model", "tiny", "-previews", "some"}, "-previews"},
		{[]string{"bench", "-model", "tiny", "-preview-psnr", "-1"}, "-preview-psnr"},
		{[]string{"bench", "-kernels", "-preview-psnr", "2"}, "not to -kernels"},
		{[]string{"bench", "-model", "tiny", "-reps", "1", "-preview-psnr", "1"}, "fitted linear preview map"},
		{[]string{"bench", "-model", "fashionvar", "-quant", "int4"}, "keeps the quantization"},
		{[]string{"bench", "-model", "fashionvar", "-vae-quant", "int4"}, "keeps the quantization"},
		{[]string{"bench", "-kernels", "-quant", "int8"}, "not to -kernels"},
		{[]string{"bench", "-kernels", "-vae-quant", "int8"}, "not to -kernels"},
		{[]string{"bench", "-weights", "dir", "-download"}, "apply to -model"},
		{[]string{"bench", "-model", "tiny", "-vae-quant", "int3"}, "-vae-quant"},
		{[]string{"bench", "-model", "tiny", "-download", "-quant", "q8"}, "-quant"},
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

// The end-to-end benchmark of var-tiny prints one JSON object whose parts are consistent, and whose
// download size is what `webvar convert -quant int8 -no-encoder` really writes. WebGPU runs on lavapipe
// here and in CI, as the generate tests do.
func TestBenchModelTinyJSON(t *testing.T) {
	download := convertedChunkBytes(t, "int8")
	for _, backend := range []string{"cpu", "webgpu"} {
		t.Run(backend, func(t *testing.T) {
			rc, stdout, stderr := runCLI(t, "bench", "-model", "tiny", "-backend", backend, "-quant", "int8", "-json", "-reps", "1")
			if rc != 0 {
				t.Fatalf("exit %d: %s", rc, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d lines, want one JSON object:\n%s", len(lines), stdout)
			}
			var raw map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &raw); err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{"model", "backend", "device", "quant", "threads", "total_seconds", "transformer_seconds",
				"decode_seconds", "preview_seconds", "per_scale_seconds", "gflop", "gflops_per_s", "peak_rss_bytes",
				"peak_gpu_bytes", "download_bytes"} {
				if _, ok := raw[field]; !ok {
					t.Errorf("no %q in %s", field, lines[0])
				}
			}
			var r bench.ModelReport
			if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
				t.Fatal(err)
			}
			if r.Model != "tiny" || r.Backend != backend || r.Quant != "int8" || r.Previews != "none" || r.Reps != 1 || r.Device == "" {
				t.Errorf("labels: %s", lines[0])
			}
			if len(r.PerScaleSeconds) != 4 || len(r.GFLOPPerScale) != 4 {
				t.Fatalf("per-scale entries %d and %d, want 4 (patch_nums 1,2,3,4)", len(r.PerScaleSeconds), len(r.GFLOPPerScale))
			}
			var scales float64
			for _, s := range r.PerScaleSeconds {
				scales += s
			}
			// One run: the median is that run, whose parts are disjoint pieces of its total.
			if parts := r.TransformerSeconds + r.DecodeSeconds + r.PreviewSeconds; !(r.DecodeSeconds > 0 && r.TransformerSeconds > 0 &&
				r.TotalSeconds >= parts*(1-1e-9) && r.PreviewSeconds == 0) {
				t.Errorf("total %g, transformer %g, decode %g, preview %g", r.TotalSeconds, r.TransformerSeconds, r.DecodeSeconds, r.PreviewSeconds)
			}
			if d := scales - r.TransformerSeconds; d > 1e-6 || d < -1e-6 {
				t.Errorf("per-scale seconds sum to %g, transformer %g", scales, r.TransformerSeconds)
			}
			if r.GFLOP.Transformer <= 0 || r.GFLOP.Decode <= 0 || r.GFLOPS.Total <= 0 {
				t.Errorf("gflop %+v, gflops_per_s %+v", r.GFLOP, r.GFLOPS)
			}
			if r.DownloadBytes != download {
				t.Errorf("download_bytes %d, webvar convert -quant int8 -no-encoder wrote %d bytes of chunks", r.DownloadBytes, download)
			}
			if r.PeakRSSBytes <= 0 {
				t.Errorf("peak_rss_bytes %d", r.PeakRSSBytes)
			}
			if (r.PeakGPUBytes > 0) != (backend == "webgpu") {
				t.Errorf("peak_gpu_bytes %d on %s", r.PeakGPUBytes, backend)
			}
		})
	}
}

// -download prints, without generating, every int8/int4 x f16/int8/int4 combination, each equal to the
// chunks webvar convert -no-encoder writes, the decoder's storage shrinking only the VQVAE part.
func TestBenchDownload(t *testing.T) {
	rc, stdout, stderr := runCLI(t, "bench", "-model", "tiny", "-download", "-json")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	type row struct {
		Quant, VAEQuant                             string
		TransformerBytes, VQVAEBytes, DownloadBytes int64
	}
	rows := map[string]row{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var r struct {
			Quant            string `json:"quant"`
			VAEQuant         string `json:"vae_quant"`
			TransformerBytes int64  `json:"transformer_bytes"`
			VQVAEBytes       int64  `json:"vqvae_bytes"`
			DownloadBytes    int64  `json:"download_bytes"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if r.DownloadBytes != r.TransformerBytes+r.VQVAEBytes {
			t.Errorf("parts do not add up: %s", line)
		}
		rows[r.Quant+"/"+r.VAEQuant] = row(r)
	}
	if len(rows) != 6 {
		t.Fatalf("%d combinations, want 6:\n%s", len(rows), stdout)
	}
	if a, b, c := rows["int8/f16"], rows["int8/int8"], rows["int8/int4"]; !(a.VQVAEBytes > b.VQVAEBytes && b.VQVAEBytes > c.VQVAEBytes &&
		a.TransformerBytes == c.TransformerBytes) || rows["int4/int4"].TransformerBytes >= c.TransformerBytes {
		t.Errorf("sizes do not shrink as the storage does: %+v", rows)
	}
	if got, want := rows["int4/int8"].DownloadBytes, convertedChunkBytes(t, "int4", "-vae-quant", "int8"); got != want {
		t.Errorf("int4/int8: -download says %d bytes, webvar convert wrote %d", got, want)
	}
	if got, want := rows["int8/int8"].DownloadBytes, convertedChunkBytes(t, "int8"); got != want {
		t.Errorf("int8 (decoder by default int8): -download says %d bytes, webvar convert wrote %d", got, want)
	}
	rc, stdout, stderr = runCLI(t, "bench", "-model", "tiny", "-download", "-quant", "int4", "-vae-quant", "int4")
	if rc != 0 || !strings.Contains(stdout, "int4   int4") || strings.Count(stdout, "\n") != 4 {
		t.Errorf("one combination: exit %d, %q, %s", rc, stdout, stderr)
	}
}

// convertedChunkBytes converts var-tiny with -no-encoder and returns its chunk bytes, after checking that
// the directory holds nothing else but the manifest.
func convertedChunkBytes(t *testing.T, quant string, args ...string) int64 {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "w")
	rc, _, stderr := runCLI(t, append([]string{"convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-patch-nums", "1,2,3,4", "-quant", quant, "-no-encoder", "-verify", "0", "-preview-fit", "0", "-out", dir}, args...)...)
	if rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var chunks, manifest int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case e.Name() == weights.ManifestFile:
			manifest = info.Size()
		case strings.HasPrefix(e.Name(), "chunk-"):
			chunks += info.Size()
		default:
			t.Fatalf("unexpected file %s in the converted directory", e.Name())
		}
	}
	if manifest == 0 || chunks == 0 {
		t.Fatalf("manifest %d bytes, chunks %d bytes", manifest, chunks)
	}
	return chunks
}

// A converted directory benchmarks with its own quantization and its chunks as the download, and the
// table names every part; linear previews use the directory's fitted map.
func TestBenchWeightsDirTable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	if rc, _, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "int4", "-no-encoder", "-verify", "0", "-preview-fit", "2", "-out", dir); rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	for _, mode := range []string{"full", "fast", "linear"} {
		rc, stdout, stderr := runCLI(t, "bench", "-weights", dir, "-backend", "cpu", "-reps", "1", "-previews", mode)
		if rc != 0 {
			t.Fatalf("exit %d: %s", rc, stderr)
		}
		for _, want := range []string{"quant int4, previews " + mode, "scale 1 (1x1)", "scale 4 (4x4)", "transformer", "VQVAE decode",
			"previews", "total", "download ", "peak RSS", "previews (" + mode + ") add"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("table lacks %q:\n%s", want, stdout)
			}
		}
		if hasMap := strings.Contains(stdout, "linear preview map: fitted"); hasMap != (mode == "linear") {
			t.Errorf("previews %s: the table says the fitted map was used: %v\n%s", mode, hasMap, stdout)
		}
	}
}

// -previews all times every mode on one loaded model and compares them; -preview-psnr adds the quality
// of the linear and fast previews per scale. The linear previews' arithmetic is a sliver of the fast
// ones' (the 10% budget is about this).
func TestBenchComparesPreviewModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	if rc, _, stderr := runCLI(t, "convert", "-var", testutil.VarTiny("var.pth"), "-vae", testutil.VarTiny("vae.pth"),
		"-quant", "int8", "-no-encoder", "-verify", "0", "-preview-fit", "2", "-out", dir); rc != 0 {
		t.Fatalf("convert: exit %d: %s", rc, stderr)
	}
	rc, stdout, stderr := runCLI(t, "bench", "-weights", dir, "-backend", "cpu", "-reps", "1", "-previews", "all", "-preview-psnr", "2")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	_, table, ok := strings.Cut(stdout, "previews compared")
	if !ok {
		t.Fatalf("no comparison:\n%s", stdout)
	}
	gflop := map[string]float64{}
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && (f[0] == "none" || f[0] == "linear" || f[0] == "fast" || f[0] == "full") {
			v, err := strconv.ParseFloat(f[3], 64)
			if err != nil {
				t.Fatalf("GFLOP column of %q: %v", line, err)
			}
			gflop[f[0]] = v
		}
	}
	if len(gflop) != 4 || gflop["none"] != 0 || !(gflop["linear"] > 0 && gflop["linear"] < gflop["fast"]/100 && gflop["fast"] < gflop["full"]) {
		t.Errorf("preview GFLOP per mode %v: want none 0 < linear << fast < full\n%s", gflop, stdout)
	}
	_, quality, ok := strings.Cut(stdout, "preview quality")
	if !ok {
		t.Fatalf("no quality table:\n%s", stdout)
	}
	rows := 0
	for _, line := range strings.Split(quality, "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && strings.HasSuffix(f[1], ")") || len(f) == 3 && f[0] == "mean" {
			rows++
			for _, col := range f[len(f)-2:] {
				if v, err := strconv.ParseFloat(col, 64); err != nil || !(v > 0 && v <= bench.MaxPSNR) {
					t.Errorf("PSNR %q in %q", col, line)
				}
			}
		}
	}
	if rows != 4 { // scales 1-3 and the mean; the last scale's preview is the final image
		t.Errorf("%d quality rows, want 4:\n%s", rows, quality)
	}
}

// Models that cannot have a fitted map time linear previews with a placeholder of the same cost.
func TestBenchLinearPlaceholder(t *testing.T) {
	rc, stdout, stderr := runCLI(t, "bench", "-model", "tiny", "-backend", "cpu", "-reps", "1", "-previews", "linear")
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, stderr)
	}
	for _, want := range []string{"previews linear", "linear preview map: placeholder", "previews (linear) add"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

// FlexVAR through the same end-to-end benchmark: per-step entries, its family and settings in the
// report, and the decode of every step counted (and timed) as previews when asked for.
func TestBenchFlexVARTinyJSON(t *testing.T) {
	for _, backend := range []string{"cpu", "webgpu"} {
		t.Run(backend, func(t *testing.T) {
			rc, stdout, stderr := runCLI(t, "bench", "-model", "flexvar-tiny", "-backend", backend, "-previews", "all", "-json", "-reps", "1")
			if rc != 0 {
				t.Fatalf("exit %d: %s", rc, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if len(lines) != 4 { // one report per -previews mode; FlexVAR renders every mode but none as step decodes
				t.Fatalf("%d lines, want 4 JSON objects:\n%s", len(lines), stdout)
			}
			for i, line := range lines {
				var r bench.ModelReport
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatal(err)
				}
				if r.Family != "flexvar" || r.Model != "flexvar-tiny" || len(r.PerScaleSeconds) != 4 || len(r.GFLOPPerScale) != 4 ||
					r.Side != 64 || !strings.Contains(r.Sampling, "cfg 2.5 (linear)") {
					t.Errorf("report %d: %s", i, line)
				}
				wantPreview := i > 0 // -previews all: none first
				if (r.GFLOP.Preview > 0) != wantPreview || (r.Previews == "steps") != wantPreview || r.GFLOP.Decode <= 0 {
					t.Errorf("report %d: previews %q, preview GFLOP %g, decode %g", i, r.Previews, r.GFLOP.Preview, r.GFLOP.Decode)
				}
			}
		})
	}
}

// `webvar bench -model mar-tiny -json`: one report with the MAR parts (transformer, diffusion, decode),
// their arithmetic, and the diffusion passes the iterations and steps imply, on both backends.
func TestBenchMARTinyJSON(t *testing.T) {
	for _, backend := range []string{"cpu", "webgpu"} {
		t.Run(backend, func(t *testing.T) {
			rc, stdout, stderr := runCLI(t, "bench", "-model", "mar-tiny", "-backend", backend, "-iters", "4", "-diffusion-steps", "5", "-json", "-reps", "1")
			if rc != 0 {
				t.Fatalf("exit %d: %s", rc, stderr)
			}
			var r bench.ModelReport
			if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &r); err != nil {
				t.Fatalf("%v: %s", err, stdout)
			}
			if r.Family != "mar" || r.Model != "mar-tiny" || r.Side != 64 || r.Iters != 4 || r.DiffusionSteps != 5 ||
				r.DiffusionPasses != 20 || !strings.Contains(r.Sampling, "4 iterations x 5 diffusion steps") {
				t.Errorf("report: %s", stdout)
			}
			if r.GFLOP.Transformer <= 0 || r.GFLOP.Diffusion <= 0 || r.GFLOP.Decode <= 0 || r.DiffusionSeconds <= 0 || r.TotalSeconds <= 0 {
				t.Errorf("parts missing: %s", stdout)
			}
		})
	}
}

// `webvar bench -model rq-tiny -json`: one report with the transformer and decode parts on both backends.
func TestBenchRQTinyJSON(t *testing.T) {
	for _, backend := range []string{"cpu", "webgpu"} {
		t.Run(backend, func(t *testing.T) {
			rc, stdout, stderr := runCLI(t, "bench", "-model", "rq-tiny", "-backend", backend, "-json", "-reps", "1")
			if rc != 0 {
				t.Fatalf("exit %d: %s", rc, stderr)
			}
			var r bench.ModelReport
			if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &r); err != nil {
				t.Fatalf("%v: %s", err, stdout)
			}
			if r.Family != "rq" || r.Model != "rq-tiny" || r.Side != 32 || r.GFLOP.Transformer <= 0 || r.GFLOP.Decode <= 0 ||
				r.TotalSeconds <= 0 || !strings.Contains(r.Sampling, "4x4x4 codes") {
				t.Errorf("report: %s", stdout)
			}
		})
	}
}
