package l7

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestOffloadLeavesTheLoop: a policy that calls Offload (basic_auth on a
// cache miss) moves its exchange off the event loop; a request that does
// not call it (a cached verification) stays on the loop.
func TestOffloadLeavesTheLoop(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	gw := startGateway(t, "fast", fmt.Sprintf(`  - path: "/"
    backend: %q
    middlewares: [ { name: basic_auth, users: ["bench:$2a$04$FHPnDiiGNAuIbTmQ.WNscO/kdmRhU66yOoRcPxCyUURQ8VUvmwK16"] } ]
`, be.URL))
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	send := func(pass string) int {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		creds := base64.StdEncoding.EncodeToString([]byte("bench:" + pass))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n", creds)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	detaches := func() int64 { return gw.srv.loopStats.detaches.Load() }

	// The first verification leaves the loop (the dial that follows is
	// then already off it).
	if code := send("pw"); code != 200 || detaches() != 1 {
		t.Fatalf("first request: %d, detaches %d; want 200, 1", code, detaches())
	}
	for range 3 {
		if code := send("pw"); code != 200 {
			t.Fatalf("cached: %d", code)
		}
	}
	if n := detaches(); n != 1 {
		t.Errorf("detaches after cached verifications: %d, want 1", n)
	}
	if code := send("wrong"); code != 401 || detaches() != 2 {
		t.Errorf("a wrong password: %d, detaches %d; want 401, 2", code, detaches())
	}
}
