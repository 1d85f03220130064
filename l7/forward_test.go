package l7

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
)

// closingBackend accepts connections and closes them at once, before
// answering; it returns its URL and the number of connections accepted.
func closingBackend(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return "http://" + ln.Addr().String(), &accepted
}

// TestRoundRobinRetryAlternates: with round robin over a backend that
// fails every request and a live one, each request retried on the live
// one, the requests' first attempts still alternate: the failing backend
// sees every other request, not every one.
func TestRoundRobinRetryAlternates(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			bad, tries := closingBackend(t)
			var served atomic.Int64
			live := backend(t, func(w http.ResponseWriter, r *http.Request) {
				served.Add(1)
				io.WriteString(w, "ok")
			})
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backends: [ { url: %q }, { url: %q } ] }\n", bad, live.URL))
			for i := range 8 {
				raw, _ := rawExchange(t, gw.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				if got := statusOf(raw); got != 200 {
					t.Fatalf("request %d: status %d, want 200 (retried on the live backend)\n%s", i, got, raw)
				}
			}
			// Outlier detection ejects after 5 consecutive failures: the
			// 4 failures of alternating first attempts stay below it.
			if got := tries.Load(); got != 4 {
				t.Errorf("failing backend tried %d times by 8 requests, want 4 (every other request first)", got)
			}
			if got := served.Load(); got != 8 {
				t.Errorf("live backend served %d, want 8", got)
			}
		})
	}
}
