//go:build js

package webgpu

import "github.com/webvar/webvar/wasm/jsgpu"

// In the browser the device comes from wasm/jsgpu, as in the app.
func openTestBackend() (*Backend, error) {
	b := (*Backend)(nil)
	d, err := jsgpu.Open(func(msg string) {
		if b != nil {
			b.DeviceLost(msg)
		}
	})
	if err != nil {
		return nil, err
	}
	b, err = NewFromDevice(d.Dev, AdapterInfo{Name: d.Name, Vendor: d.Vendor, Backend: "browser"}, d.Limits)
	return b, err
}
