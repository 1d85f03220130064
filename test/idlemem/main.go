//go:build linux

// Command idlemem measures what an idle keep-alive client connection costs
// the gateway in memory.
//
// It starts the gateway (the fast engine, event loops as -loops says) in a
// child process of its own on loopback, raises RLIMIT_NOFILE, then opens
// client connections in steps (-conns, e.g. 0,10000,50000); each sends one
// request, reads the answer and stays open, idle. After each step it waits
// for the gateway to settle and reports the gateway's RSS (VmRSS, after a
// GC, and again once the runtime returned its free pages to the system),
// Go's view (heap and stacks in use, goroutines), and the cost per idle
// connection against the first step. At the end it checks that a
// sample of the idle connections still answers a second request.
//
//	go run ./test/idlemem                         # 0, 10000 and 50000 idle connections
//	go run ./test/idlemem -conns 0,20000 -loops off
//
// Connections come from several loopback source addresses (127.0.0.1,
// 127.0.0.2, ...) so that more than one port range's worth can be opened.
// The run is bounded by -timeout.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveArg {
		os.Exit(serveChild(os.Args[2:]))
	}
	conns := flag.String("conns", "0,10000,50000", "numbers of idle connections to measure at, in increasing order")
	loops := flag.String("loops", "auto", "server.event_loops of the gateway: auto, N or off")
	timeout := flag.Duration("timeout", 3*time.Minute, "bound on the whole run")
	settle := flag.Duration("settle", 5*time.Second, "pause after each step before measuring")
	flag.Parse()
	var levels []int
	for _, f := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || len(levels) > 0 && n < levels[len(levels)-1] {
			fmt.Fprintf(os.Stderr, "idlemem: -conns: %q is not an increasing list of counts\n", *conns)
			os.Exit(2)
		}
		levels = append(levels, n)
	}
	res, err := Run(Options{Levels: levels, Loops: *loops, Timeout: *timeout, Settle: *settle, Log: os.Stdout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "idlemem:", err)
		os.Exit(1)
	}
	fmt.Print(res.Table())
}
