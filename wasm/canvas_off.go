//go:build js && !canvasui

package main

import "errors"

// hasCanvasUI says this binary has the ebiten UI: without a ui parameter it runs the HTML controls.
const hasCanvasUI = false

// runCanvas without the canvasui build tag: this binary has no ebiten UI (canvas.go). index.html loads
// webvar-canvas.wasm, built with the tag, for the ebiten UI, so this only runs for ui=canvas if that file is missing.
func runCanvas(params) {
	fail(errors.New("ui=canvas needs webvar-canvas.wasm (GOOS=js GOARCH=wasm go build -tags canvasui ./wasm); webvar serve builds it"))
}
