// Command rustygate is the RustyGate reverse proxy and API gateway.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
)

// Stamped at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

const usage = `RustyGate: an eBPF-accelerated L4/L7 reverse proxy and API gateway.

Usage:
  rustygate run [-c FILE]            run the gateway (default config/default.yaml,
                                     or $RUSTYGATE_CONFIG)
  rustygate validate FILE            check a configuration file without running it
  rustygate bpf status               show the kernel datapath: mode, programs, pinned maps
  rustygate upgrade -p PID           replace a running gateway by this binary with no
                                     connection refused (same as kill -USR2 PID)
  rustygate demo-backend [--listen ADDR]
                                     run the bundled demo backend (default :8001)
  rustygate version                  print version information
  rustygate help                     print this help
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "upgrade":
		return cmdUpgrade(args[1:], stderr)
	case "bpf":
		return cmdBPF(args[1:], stdout, stderr)
	case "demo-backend":
		return cmdDemoBackend(args[1:], stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "rustygate %s (commit %s, %s, %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		fmt.Fprintf(stdout, "features: %s\n", features())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "rustygate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
