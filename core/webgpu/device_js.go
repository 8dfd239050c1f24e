//go:build js

package webgpu

import (
	"fmt"
	"syscall/js"

	"github.com/cogentcore/webgpu/wgpu"
)

// await blocks the calling goroutine until promise settles (never call it from inside a js.FuncOf
// callback: that deadlocks the event loop).
func await(promise js.Value) (js.Value, error) {
	ch := make(chan struct{})
	var val js.Value
	var err error
	then := js.FuncOf(func(_ js.Value, args []js.Value) any {
		if len(args) > 0 {
			val = args[0]
		}
		close(ch)
		return nil
	})
	catch := js.FuncOf(func(_ js.Value, args []js.Value) any {
		msg := "rejected"
		if len(args) > 0 {
			msg = args[0].Call("toString").String()
		}
		err = fmt.Errorf("%s", msg)
		close(ch)
		return nil
	})
	defer then.Release()
	defer catch.Release()
	promise.Call("then", then).Call("catch", catch)
	<-ch
	return val, err
}

// openDevice asks navigator.gpu for an adapter and a device with the adapter's storage limits. The Go
// binding drops RequiredLimits in the browser, so requestDevice is called directly and wrapped.
func openDevice(lost func(string)) (*wgpu.Device, AdapterInfo, wgpu.Limits, error) {
	gpu := js.Global().Get("navigator").Get("gpu")
	if gpu.IsUndefined() || gpu.IsNull() {
		return nil, AdapterInfo{}, wgpu.Limits{}, fmt.Errorf("%w: this browser has no WebGPU (navigator.gpu is missing)", ErrNoAdapter)
	}
	opts := js.Global().Get("Object").New()
	opts.Set("powerPreference", "high-performance")
	ad, err := await(gpu.Call("requestAdapter", opts))
	if err != nil || ad.IsNull() || ad.IsUndefined() {
		return nil, AdapterInfo{}, wgpu.Limits{}, fmt.Errorf("%w: requestAdapter gave no adapter (%v)", ErrNoAdapter, err)
	}
	info := AdapterInfo{Name: "browser WebGPU", Backend: "browser"}
	if ai := ad.Get("info"); !ai.IsUndefined() {
		info.Vendor = ai.Get("vendor").String()
		info.Name = ai.Get("architecture").String()
		if d := ai.Get("description").String(); d != "" {
			info.Name = d
		}
	}
	sup := ad.Get("limits")
	req := js.Global().Get("Object").New()
	for _, k := range []string{"maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize",
		"maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX", "maxComputeWorkgroupSizeY"} {
		req.Set(k, sup.Get(k))
	}
	desc := js.Global().Get("Object").New()
	desc.Set("requiredLimits", req)
	dv, err := await(ad.Call("requestDevice", desc))
	if err != nil {
		return nil, info, wgpu.Limits{}, fmt.Errorf("%w: requestDevice: %v", ErrNoAdapter, err)
	}
	onLost := js.FuncOf(func(_ js.Value, args []js.Value) any {
		msg := "device lost"
		if len(args) > 0 {
			msg = args[0].Get("message").String()
		}
		lost(msg)
		return nil
	})
	dv.Get("lost").Call("then", onLost)
	dl := dv.Get("limits")
	limits := wgpu.DefaultLimits()
	limits.MaxStorageBufferBindingSize = uint64(dl.Get("maxStorageBufferBindingSize").Float())
	limits.MaxBufferSize = uint64(dl.Get("maxBufferSize").Float())
	limits.MaxComputeWorkgroupsPerDimension = uint32(dl.Get("maxComputeWorkgroupsPerDimension").Int())
	limits.MaxComputeWorkgroupStorageSize = uint32(dl.Get("maxComputeWorkgroupStorageSize").Int())
	limits.MaxComputeInvocationsPerWorkgroup = uint32(dl.Get("maxComputeInvocationsPerWorkgroup").Int())
	dev := wgpu.NewDevice(dv)
	return &dev, info, limits, nil
}
