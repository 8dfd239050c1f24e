//go:build !js

package webgpu

func openTestBackend() (*Backend, error) { return New() }
