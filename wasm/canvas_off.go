//go:build js && !canvasui

package main

import "errors"

// runCanvas without the canvasui build tag: this binary has no ebiten UI (canvas.go). index.html loads
// webvar-canvas.wasm, built with the tag, for ?ui=canvas, so this only runs if that file is missing.
func runCanvas(params) {
	fail(errors.New("ui=canvas needs webvar-canvas.wasm (GOOS=js GOARCH=wasm go build -tags canvasui ./wasm); webvar serve builds it"))
}
