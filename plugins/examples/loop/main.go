//go:build wasip1

// Command loop is a misbehaving http-wasm guest whose handle_request never
// returns: it shows that the per-call deadline stops it.
//
// Build it with `make plugins`, or:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugins/examples/loop.wasm ./plugins/examples/loop
package main

var spins uint64

//go:wasmexport handle_request
func handleRequest() uint64 {
	for {
		spins++
	}
}

//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {}

func main() {}
