//go:build !js

package webgpu

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/cogentcore/webgpu/wgpu"
)

// instances holds one wgpu instance per native API for the life of the process. This is a deliberate
// exception to "no global state": the v0.23.0 binding's CreateInstance hands wgpu-native a malloc'd,
// uninitialised extras struct, so a second CreateInstance in one process can read a garbage GLES version
// and abort ("Unknown gles3 minor version"). Creating each instance once avoids it.
var instances = struct {
	sync.Mutex
	m map[wgpu.InstanceBackend]*wgpu.Instance
}{m: map[wgpu.InstanceBackend]*wgpu.Instance{}}

func instanceFor(be wgpu.InstanceBackend) *wgpu.Instance {
	instances.Lock()
	defer instances.Unlock()
	if inst, ok := instances.m[be]; ok {
		return inst
	}
	inst := wgpu.CreateInstance(&wgpu.InstanceDescriptor{Backends: be})
	instances.m[be] = inst
	return inst
}

// openDevice finds an adapter for the requested native API and opens a device with the adapter's
// storage-buffer limits (the defaults, 128 MiB per binding, are too small for large models).
func openDevice(lost func(string)) (*wgpu.Device, AdapterInfo, wgpu.Limits, error) {
	name := strings.ToLower(os.Getenv("WEBVAR_WGPU_BACKEND"))
	if name == "" {
		name = "vulkan"
		if runtime.GOOS == "darwin" {
			name = "metal"
		}
	}
	backends := map[string]wgpu.InstanceBackend{
		"vulkan": wgpu.InstanceBackendVulkan, "metal": wgpu.InstanceBackendMetal,
		"gl": wgpu.InstanceBackendGL, "dx12": wgpu.InstanceBackendDX12, "any": wgpu.InstanceBackendPrimary,
	}
	be, ok := backends[name]
	if !ok {
		return nil, AdapterInfo{}, wgpu.Limits{}, fmt.Errorf("WEBVAR_WGPU_BACKEND=%q: want vulkan, metal, gl, dx12 or any", name)
	}
	inst := instanceFor(be)
	ad, err := inst.RequestAdapter(&wgpu.RequestAdapterOptions{PowerPreference: wgpu.PowerPreferenceHighPerformance})
	if err != nil || ad == nil {
		return nil, AdapterInfo{}, wgpu.Limits{}, fmt.Errorf("%w: no %s adapter (%v); install a driver (on Linux without a GPU: mesa-vulkan-drivers for lavapipe)", ErrNoAdapter, name, err)
	}
	defer ad.Release()
	ai := ad.GetInfo()
	info := AdapterInfo{Name: ai.Name, Backend: ai.BackendType.String(), Driver: ai.DriverDescription, Vendor: ai.VendorName}
	if info.Name == "" || strings.HasPrefix(info.Name, "0x") { // lavapipe reports its PCI id as the name
		info.Name, info.Driver = ai.DriverDescription, ""
	}
	sup := ad.GetLimits().Limits
	req := wgpu.DefaultLimits()
	req.MaxStorageBufferBindingSize = sup.MaxStorageBufferBindingSize
	req.MaxBufferSize = sup.MaxBufferSize
	req.MaxStorageBuffersPerShaderStage = min(sup.MaxStorageBuffersPerShaderStage, 10)
	// Workgroup limits stay at WebGPU's defaults (16 KiB shared memory, 256 invocations): kernels must run
	// in every browser, and lavapipe would otherwise accept tiles a browser rejects.
	// No DeviceLostCallback: the v0.23.0 binding passes a Go pointer to C for it, which the cgo pointer
	// check rejects with a panic. Natively a lost device shows up as failing submissions and mappings,
	// which the backend reports as errors.
	_ = lost
	dev, err := ad.RequestDevice(&wgpu.DeviceDescriptor{
		Label:          "webvar",
		RequiredLimits: &wgpu.RequiredLimits{Limits: req},
	})
	if err != nil {
		return nil, info, wgpu.Limits{}, fmt.Errorf("%w: request device on %s: %v", ErrNoAdapter, info.Name, err)
	}
	return dev, info, dev.GetLimits().Limits, nil
}
