package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestLingerAfterRefusedBody: a body refused with 413 while the client is
// still sending it does not make the gateway reset the connection: the
// client can go on writing (what it sends is read and dropped), then
// reads its 413 and a clean close. Closing at once would reset the
// connection under the client's writes, and a reset destroys the
// response the client had not read yet.
func TestLingerAfterRefusedBody(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	for _, engine := range []string{"fast", "fast-goroutines"} {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q, middlewares: [ { name: limits, max_request_body: 1k } ] }\n", be.URL))
			c, err := net.Dial("tcp", gw.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			c.SetDeadline(time.Now().Add(10 * time.Second))
			const total = 4 << 20
			if _, err := fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", total); err != nil {
				t.Fatal(err)
			}
			// Well past the 413: writes keep succeeding only if the
			// gateway keeps reading.
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for sent := 0; sent < total; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					t.Fatalf("writing the body after %d bytes: %v", sent, err)
				}
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != 413 || err != nil || !resp.Close {
				t.Fatalf("answer %d %q (%v), close %v; want 413 and a close", resp.StatusCode, body, err, resp.Close)
			}
		})
	}
}
