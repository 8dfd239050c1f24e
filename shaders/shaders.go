// Package shaders holds webvar's WGSL compute kernels as real .wgsl files, embedded in the binary, and
// expands their variants from one small template each (text/template: {{.WG}} workgroup size and the
// like), so there is one source per kernel family instead of copies.
//
// Conventions shared by every kernel (the WebGPU backend relies on them):
//   - @group(0) @binding(0) is a uniform struct `P` of 4-byte scalars (u32 counts are in elements);
//   - bindings 1..n are storage buffers: read-only inputs first, then the read_write outputs;
//   - 1-D kernels derive their index as gid.x + gid.y * num_workgroups.x * WG, because one dispatch
//     dimension is limited to 65535 workgroups;
//   - workgroups stay within WebGPU's default limits (256 invocations, 16 KiB of workgroup memory), the
//     limits every browser grants;
//   - the bundled Naga (wgpu-native) accepts only a constant name or literal as an array size
//     (array<f32, TK * LD> is a parse error): declare a named const;
//   - f32 only: Naga rejects `enable f16;`.
package shaders

import (
	"bytes"
	"embed"
	"fmt"
	"text/template"
)

//go:embed *.wgsl
var files embed.FS

// Names lists the embedded kernel files.
func Names() ([]string, error) {
	ents, err := files.ReadDir(".")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}

// Expand returns the WGSL of kernel file name with the template filled from params (a struct or map).
func Expand(name string, params any) (string, error) {
	src, err := files.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("shader %s: %w", name, err)
	}
	funcs := template.FuncMap{"inc": func(i int) int { return i + 1 }}
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(string(src))
	if err != nil {
		return "", fmt.Errorf("shader %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, params); err != nil {
		return "", fmt.Errorf("shader %s: %w", name, err)
	}
	return b.String(), nil
}
