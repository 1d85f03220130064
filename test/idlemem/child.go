//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7"
	"github.com/rustygate/rustygate/observe"
)

// serveArg as the first argument runs the gateway side (the child).
const serveArg = "-idlemem-serve"

// memReport is what the child reports of itself.
type memReport struct {
	RSS int64 `json:"rss"`
	// RSSFreed is RSS once the runtime returned its free pages to the
	// system (debug.FreeOSMemory): without what a burst of activity left.
	RSSFreed   int64 `json:"rss_freed"`
	HeapInuse  int64 `json:"heap_inuse"`
	StackInuse int64 `json:"stack_inuse"`
	Goroutines int   `json:"goroutines"`
}

// serveChild runs the gateway on loopback, prints "ADDR host:port", then
// answers each "mem" line on stdin with a memReport line; it ends when
// stdin closes.
func serveChild(args []string) int {
	loops := "auto"
	if len(args) > 0 {
		loops = args[0]
	}
	yaml := fmt.Sprintf(`server: { listen: "127.0.0.1:0", engine: fast, event_loops: %q, idle_timeout: 1h, read_header_timeout: 60s }
admin: { listen: "off" }
log: { access: false, level: error }
routes:
  - { path: "/api", backend: "http://127.0.0.1:9" }
`, loops)
	cfg, err := config.Parse("idlemem.yaml", []byte(yaml))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	lg, err := observe.NewLogger(io.Discard, observe.LogOptions{Format: "json", Level: "error"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	tr := l7.NewTransport(nil, nil)
	snap, err := l7.NewSnapshot(cfg, tr, nil, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv := l7.NewServer(snap, tr, lg, nil)
	tr.Activate(snap)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	go srv.Serve(ln)
	fmt.Printf("ADDR %s\n", ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if strings.TrimSpace(in.Text()) == "mem" {
			b, _ := json.Marshal(measureSelf())
			fmt.Printf("%s\n", b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	tr.Close()
	return 0
}

// measureSelf collects garbage, lets the runtime settle, and reports.
func measureSelf() memReport {
	runtime.GC()
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss := vmRSS()
	debug.FreeOSMemory()
	return memReport{
		RSS:        rss,
		RSSFreed:   vmRSS(),
		HeapInuse:  int64(ms.HeapInuse),
		StackInuse: int64(ms.StackInuse),
		Goroutines: runtime.NumGoroutine(),
	}
}

// vmRSS returns the process's resident set size in bytes.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}
