package main

import (
	"runtime"
	"strings"
)

// features lists what this build can do, for `rustygate version`.
func features() string {
	f := []string{"http1-fast-engine", "http2", "h2c", "l4-splice", "userspace-datapath"}
	if runtime.GOOS == "linux" {
		f = append(f, "bpf-conn-limiter(xdp,tcx)", "bpf-bans")
	}
	return strings.Join(f, " ")
}
