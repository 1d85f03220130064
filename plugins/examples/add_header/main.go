//go:build wasip1

// Command add_header is an http-wasm guest that adds
// "X-RustyGate-Plugin: executed" to every response.
//
// Build it with `make plugins`, or:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugins/examples/add_header.wasm ./plugins/examples/add_header
package main

import "unsafe"

// headerKindResponse is the http-wasm header_kind of response headers.
const headerKindResponse = 1

const (
	headerName  = "X-RustyGate-Plugin"
	headerValue = "executed"
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
