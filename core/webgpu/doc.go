// Package webgpu is the WebGPU backend of the engine: every core.Backend op as a WGSL compute kernel
// (shaders/), dispatched through github.com/cogentcore/webgpu. The same Go source runs natively on
// wgpu-native (Vulkan, Metal; lavapipe without a GPU) and, compiled with GOOS=js, on the browser's WebGPU.
//
// Execution model: ops record compute dispatches into one pending command encoder, submitted every 64
// dispatches (so the GPU starts while the host records the rest) and before a Download; a transformer
// scale of VAR-d16 is about five submissions. Each dispatch's parameters live in a 256-byte slot of a uniform arena written just before
// submission. Freed tensors return their buffers to a size-bucketed pool; buffers of the pool are only
// reused as op outputs, which WebGPU orders after every earlier read in the same queue. ReleaseIdle empties
// the pool between phases whose tensors have other sizes (MemoryStats breaks the memory down).
//
// Faults: a lost device (DeviceLost, from the browser's device.lost promise or any goroutine) makes every
// later op, and a wait for the GPU in progress, fail with an error wrapping ErrDeviceLost (and
// core.ErrDeviceLost); a wait that outlasts its limit (10 minutes) marks the device lost too. A command
// that fails while recording (a readback's copy) drops the pending batch unsubmitted and marks the device
// lost: wgpu-native aborts the process on a submission it rejects. Lost() tells a front end to open a new
// backend; faults_test.go drills each case on lavapipe.
//
// Debug switches (environment variables, read by New):
//
//	WEBVAR_WGPU_BACKEND   native API: vulkan (default on Linux/Windows), metal (default on macOS), gl, dx12, any
//	WEBVAR_DUMP_WGSL=DIR  write every expanded kernel to DIR/<kernel>.wgsl when its pipeline is built
//	WEBVAR_WGPU_SYNC=1    submit and wait after every op, so an error names the op that caused it
//	WEBVAR_WGPU_LOG       wgpu-native's own stderr log level: error (default), warn, info, debug, trace
//	WEBVAR_WGPU_BATCH=N   submit every N dispatches (1..256; default 64), for tuning on a new GPU
package webgpu
