package main

import (
	"runtime"
	"strings"
)

// features lists what this build can do, for `rustygate version`.
func features() string {
	f := []string{"http1-fast-engine", "http2", "h2c", "l4-splice", "userspace-datapath", "wasm-plugins", "otel-tracing"}
	if runtime.GOOS == "linux" {
		f = append(f, "bpf-conn-limiter(xdp,tcx)", "bpf-bans", "bpf-l4-kernel-splice(sockmap)", "bpf-sk-lookup-steering")
	}
	return strings.Join(f, " ")
}
