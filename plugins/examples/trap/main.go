//go:build wasip1

// Command trap is a misbehaving http-wasm guest whose handle_request
// executes the WebAssembly "unreachable" instruction: it shows how a trap
// is handled (fail_open decides whether the request goes on).
//
// Build it with `make plugins`, or:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugins/examples/trap.wasm ./plugins/examples/trap
package main

import "runtime"

//go:wasmexport handle_request
func handleRequest() uint64 {
	// On GOARCH=wasm, runtime.Breakpoint is the unreachable instruction.
	runtime.Breakpoint()
	return 1
}

//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {}

func main() {}
