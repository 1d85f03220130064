//go:build wasip1

// Command wasmspin is an http-wasm guest for the l7 tests: it lets every
// request go on, except one whose target contains "spin", on which it
// loops until the host stops it.
package main

import (
	"strings"
	"unsafe"
)

//go:wasmimport http_handler get_uri
func getURI(buf unsafe.Pointer, limit uint32) uint32

var (
	uri   [512]byte
	spins uint64
)

//go:wasmexport handle_request
func handleRequest() uint64 {
	n := getURI(unsafe.Pointer(&uri[0]), uint32(len(uri)))
	if n <= uint32(len(uri)) && strings.Contains(string(uri[:n]), "spin") {
		for {
			spins++
		}
	}
	return 1
}

func main() {}
