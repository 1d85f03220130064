//go:build wasip1

// Command add_header_v2 is an http-wasm guest that adds
// "X-RustyGate-Plugin: executed-v2" to every response: the second version
// of add_header, used to exercise hot reload.
//
// Build it with `make plugins`, or:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugins/examples/add_header_v2.wasm ./plugins/examples/add_header_v2
package main

import "unsafe"

// headerKindResponse is the http-wasm header_kind of response headers.
const headerKindResponse = 1

const (
	headerName  = "X-RustyGate-Plugin"
	headerValue = "executed-v2"
)

//go:wasmimport http_handler add_header_value
func addHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32)

// handleRequest lets every request go on (next=1) without request context.
//
//go:wasmexport handle_request
func handleRequest() uint64 { return 1 }

// handleResponse runs once the proxy has the response, before it is sent.
//
//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {
	addHeaderValue(headerKindResponse,
		unsafe.Pointer(unsafe.StringData(headerName)), uint32(len(headerName)),
		unsafe.Pointer(unsafe.StringData(headerValue)), uint32(len(headerValue)))
}

// main is required by the Go toolchain; a c-shared (reactor) module only
// runs the package initialisation, never main.
func main() {}
