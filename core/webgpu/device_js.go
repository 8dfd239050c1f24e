//go:build js

package webgpu

import (
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"
)

// openDevice: in the browser the device is opened by wasm/jsgpu (it needs syscall/js, which core does not
// import) and handed to NewFromDevice.
func openDevice(func(string)) (*wgpu.Device, AdapterInfo, wgpu.Limits, error) {
	return nil, AdapterInfo{}, wgpu.Limits{}, fmt.Errorf("%w: in the browser, open the device with wasm/jsgpu and use NewFromDevice", ErrNoAdapter)
}
