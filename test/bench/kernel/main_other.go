//go:build !linux

// Command kernel compares the kernel datapath with its userspace twin
// under a connection flood; it needs Linux (network namespaces, BPF).
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "bench-kernel needs Linux (this is %s)\n", runtime.GOOS)
	os.Exit(1)
}
