//go:build wasip1

// Command deny is an http-wasm guest that answers 403 with a short body,
// instead of forwarding, when the request carries an X-Deny header.
//
// Build it with `make plugins`, or:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugins/examples/deny.wasm ./plugins/examples/deny
package main

import "unsafe"

const (
	headerKindRequest  = 0
	headerKindResponse = 1
	bodyKindResponse   = 1
)

const (
	denyHeader  = "X-Deny"
	contentType = "Content-Type"
	textPlain   = "text/plain; charset=utf-8"
	denyBody    = "denied by plugin\n"
)

//go:wasmimport http_handler get_header_values
func getHeaderValues(kind uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, bufLimit uint32) uint64

//go:wasmimport http_handler set_status_code
func setStatusCode(code uint32)

//go:wasmimport http_handler set_header_value
func setHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32)

//go:wasmimport http_handler write_body
func writeBody(kind uint32, body unsafe.Pointer, bodyLen uint32)

func ptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// handleRequest answers 403 when X-Deny is present, else lets the request
// go on. get_header_values with buf_limit 0 writes nothing and returns
// count<<32|len: a non-zero count means the header exists.
//
//go:wasmexport handle_request
func handleRequest() uint64 {
	countLen := getHeaderValues(headerKindRequest, ptr(denyHeader), uint32(len(denyHeader)), nil, 0)
	if countLen>>32 == 0 {
		return 1 // next=1: forward
	}
	setStatusCode(403)
	setHeaderValue(headerKindResponse, ptr(contentType), uint32(len(contentType)), ptr(textPlain), uint32(len(textPlain)))
	writeBody(bodyKindResponse, ptr(denyBody), uint32(len(denyBody)))
	return 0 // next=0: the response written above is the answer
}

// handleResponse has nothing to do; it is exported because the ABI asks
// every guest to.
//
//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {}

func main() {}
