//go:build js

// Package jsgpu opens a WebGPU device in the browser. It lives outside core/ because it needs syscall/js:
// the cogentcore/webgpu binding drops RequiredLimits in the browser, so requestDevice is called directly
// and the result wrapped with wgpu.NewDevice. Pass the result to webgpu.NewFromDevice.
package jsgpu

import (
	"errors"
	"fmt"
	"syscall/js"

	"github.com/cogentcore/webgpu/wgpu"
)

// ErrNoWebGPU: the browser has no usable WebGPU (no navigator.gpu, no adapter, or requestDevice failed).
var ErrNoWebGPU = errors.New("no usable WebGPU in this browser")

// Device is an opened browser device.
type Device struct {
	Dev    *wgpu.Device
	Name   string // adapter description or architecture, "" when the browser does not say
	Vendor string
	Limits wgpu.Limits
}

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

// Open asks navigator.gpu for an adapter and a device with the adapter's storage-buffer limits (workgroup
// limits stay at the defaults every kernel is written for). lost is called if the device is lost later.
// It blocks: call it from a goroutine, never from inside a js.FuncOf callback.
func Open(lost func(msg string)) (*Device, error) {
	gpu := js.Global().Get("navigator").Get("gpu")
	if gpu.IsUndefined() || gpu.IsNull() {
		return nil, fmt.Errorf("%w: navigator.gpu is missing", ErrNoWebGPU)
	}
	opts := js.Global().Get("Object").New()
	opts.Set("powerPreference", "high-performance")
	ad, err := await(gpu.Call("requestAdapter", opts))
	if err != nil || ad.IsNull() || ad.IsUndefined() {
		if err != nil {
			return nil, fmt.Errorf("%w: requestAdapter failed: %v", ErrNoWebGPU, err)
		}
		return nil, fmt.Errorf("%w: the browser offers no WebGPU adapter", ErrNoWebGPU)
	}
	d := &Device{}
	if ai := ad.Get("info"); !ai.IsUndefined() {
		d.Vendor = ai.Get("vendor").String()
		d.Name = ai.Get("architecture").String()
		if desc := ai.Get("description").String(); desc != "" {
			d.Name = desc
		}
	}
	sup := ad.Get("limits")
	req := js.Global().Get("Object").New()
	// Only the buffer limits are raised; workgroup limits stay at the defaults every kernel is written for.
	for _, k := range []string{"maxStorageBufferBindingSize", "maxBufferSize"} {
		req.Set(k, sup.Get(k))
	}
	desc := js.Global().Get("Object").New()
	desc.Set("requiredLimits", req)
	dv, err := await(ad.Call("requestDevice", desc))
	if err != nil {
		return nil, fmt.Errorf("%w: requestDevice: %v", ErrNoWebGPU, err)
	}
	onLost := js.FuncOf(func(_ js.Value, args []js.Value) any {
		msg := "device lost"
		if len(args) > 0 {
			msg = args[0].Get("message").String()
		}
		if lost != nil {
			lost(msg)
		}
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
	d.Dev, d.Limits = &dev, limits
	return d, nil
}
