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

// instance is the process's one wgpu instance, created without a descriptor. This is a deliberate
// exception to "no global state": with a descriptor, the v0.23.0 binding's CreateInstance hands
// wgpu-native a malloc'd extras struct whose other fields (the GLES minor version among them) it never
// initialises, and wgpu-native aborts ("Unknown gles3 minor version") when that memory is dirty, as it is
// once ebiten has opened its window (webvar preview). Without a descriptor no extras are passed and every
// native API is enabled; openDevice picks the API by enumerating that API's adapters (the binding fills
// that options struct completely). One instance serves every device.
var instance = struct {
	sync.Mutex
	inst *wgpu.Instance
}{}

func theInstance() *wgpu.Instance {
	instance.Lock()
	defer instance.Unlock()
	if instance.inst == nil {
		// wgpu-native's own log (stderr) at Error by default: with every API enabled, the APIs a machine
		// does not use add warnings that are not actionable (EGL on a headless Linux box, for one).
		level := map[string]wgpu.LogLevel{"error": wgpu.LogLevelError, "warn": wgpu.LogLevelWarn,
			"info": wgpu.LogLevelInfo, "debug": wgpu.LogLevelDebug, "trace": wgpu.LogLevelTrace}
		if l, ok := level[strings.ToLower(os.Getenv("WEBVAR_WGPU_LOG"))]; ok {
			wgpu.SetLogLevel(l)
		} else {
			wgpu.SetLogLevel(wgpu.LogLevelError)
		}
		instance.inst = wgpu.CreateInstance(nil)
	}
	return instance.inst
}

// pickAdapter returns the most capable adapter of the given APIs (a discrete GPU before an integrated one
// before anything else, such as a CPU emulation), releasing the others; nil if there is none.
func pickAdapter(backends wgpu.InstanceBackend) *wgpu.Adapter {
	rank := func(t wgpu.AdapterType) int {
		switch t {
		case wgpu.AdapterTypeDiscreteGPU:
			return 0
		case wgpu.AdapterTypeIntegratedGPU:
			return 1
		}
		return 2
	}
	var best *wgpu.Adapter
	for _, ad := range theInstance().EnumerateAdapters(&wgpu.InstanceEnumerateAdapterOptons{Backends: backends}) {
		if best == nil || rank(ad.GetInfo().AdapterType) < rank(best.GetInfo().AdapterType) {
			if best != nil {
				best.Release()
			}
			best = ad
		} else {
			ad.Release()
		}
	}
	return best
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
	ad := pickAdapter(be)
	if ad == nil {
		return nil, AdapterInfo{}, wgpu.Limits{}, fmt.Errorf("%w: no %s adapter; install a driver (on Linux without a GPU: mesa-vulkan-drivers for lavapipe)", ErrNoAdapter, name)
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
	// check rejects with a panic. Natively a loss shows up as a wait for the GPU that never ends, which
	// waitLocked bounds (and then marks the device lost), or as a failing command; the binding's
	// wgpuDeviceDestroy is no help for drills either: on this wgpu-native build the device keeps working
	// after it (tested on lavapipe). A submission that wgpu-native rejects aborts the process (its
	// handle_error_fatal), so the backend never submits after a failed command or a loss (abandonLocked).
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
