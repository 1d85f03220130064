package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// bigBodyHandler hashes the request body and answers with 1 MiB of random
// data, with a Content-Length or chunked as X-Resp-Mode asks. The
// response headers carry both hashes and how the request was framed.
func bigBodyHandler(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), 500)
		return
	}
	resp := make([]byte, 1<<20)
	rand.Read(resp)
	hdr := w.Header()
	hdr.Set("X-Req-Sha256", hex.EncodeToString(h.Sum(nil)))
	hdr.Set("X-Req-Len", strconv.FormatInt(n, 10))
	hdr.Set("X-Req-Content-Length", strconv.FormatInt(r.ContentLength, 10))
	hdr.Set("X-Req-Transfer-Encoding", strings.Join(r.TransferEncoding, ","))
	hdr.Set("X-Resp-Sha256", sha(resp))
	hdr.Set("Content-Type", "application/octet-stream")
	if r.Header.Get("X-Resp-Mode") == "length" {
		hdr.Set("Content-Length", strconv.Itoa(len(resp)))
		w.Write(resp)
		return
	}
	// No length: write in pieces, flushing, so net/http sends it chunked.
	f := w.(http.Flusher)
	for off := 0; off < len(resp); off += 32 << 10 {
		w.Write(resp[off : off+32<<10])
		f.Flush()
	}
}

// TestLargeBodies: 1 MiB bodies both ways, with and without lengths.
func TestLargeBodies(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		be := newBackend(t, bigBodyHandler)
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL)))
		c := newClient(t)
		for _, reqMode := range []string{"length", "chunked", "expect"} {
			for _, respMode := range []string{"length", "chunked"} {
				t.Run("request "+reqMode+", response "+respMode, func(t *testing.T) {
					data := randomBytes(t, 1<<20)
					req, err := http.NewRequest("POST", g.URL()+"/api/test/big", bytes.NewReader(data))
					if err != nil {
						t.Fatal(err)
					}
					switch reqMode {
					case "chunked":
						req.Body = io.NopCloser(bytes.NewReader(data))
						req.GetBody = nil
						req.ContentLength = -1
					case "expect":
						// Sent with a length after the gateway's 100 Continue.
						req.Header.Set("Expect", "100-continue")
					}
					req.Header.Set("X-Resp-Mode", respMode)
					resp, body := do(t, c, req)
					if resp.StatusCode != 200 {
						t.Fatalf("status %d: %.200s", resp.StatusCode, body)
					}
					if got := resp.Header.Get("X-Req-Len"); got != strconv.Itoa(len(data)) {
						t.Errorf("backend read %s request bytes, want %d", got, len(data))
					}
					if got := resp.Header.Get("X-Req-Sha256"); got != sha(data) {
						t.Errorf("request body hash at the backend %s, sent %s", got, sha(data))
					}
					if reqMode != "chunked" {
						if got := resp.Header.Get("X-Req-Content-Length"); got != strconv.Itoa(len(data)) {
							t.Errorf("backend Content-Length %s, want %d", got, len(data))
						}
					} else if got := resp.Header.Get("X-Req-Transfer-Encoding"); got != "chunked" {
						t.Errorf("backend Transfer-Encoding %q, want chunked (length %s)", got, resp.Header.Get("X-Req-Content-Length"))
					}
					if len(body) != 1<<20 {
						t.Errorf("response body %d bytes, want %d", len(body), 1<<20)
					}
					if got := sha(body); got != resp.Header.Get("X-Resp-Sha256") {
						t.Errorf("response body hash %s, backend sent %s", got, resp.Header.Get("X-Resp-Sha256"))
					}
					if respMode == "length" && resp.ContentLength != 1<<20 {
						t.Errorf("response Content-Length %d, want %d", resp.ContentLength, 1<<20)
					}
					if respMode == "chunked" && (resp.ContentLength != -1 || len(resp.TransferEncoding) == 0) {
						t.Errorf("response ContentLength %d, TransferEncoding %q: want chunked", resp.ContentLength, resp.TransferEncoding)
					}
				})
			}
		}
	})
}

// TestStreaming: a flushed part of a response (a server-sent event)
// reaches the client before the backend writes the next one, whether the
// response is chunked or has a Content-Length.
func TestStreaming(t *testing.T) {
	const ev1, ev2 = "data: one\n\n", "data: two\n\n"
	forEachEngine(t, func(t *testing.T, engine string) {
		var secondSent atomic.Int64 // unix nanos when the second event was written
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			if r.URL.Query().Get("mode") == "length" {
				w.Header().Set("Content-Length", strconv.Itoa(len(ev1)+len(ev2)))
			}
			io.WriteString(w, ev1)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			secondSent.Store(time.Now().UnixNano())
			io.WriteString(w, ev2)
		})
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL)))
		c := newClient(t)

		for _, mode := range []string{"chunked", "length"} {
			t.Run(mode, func(t *testing.T) {
				secondSent.Store(0)
				start := time.Now()
				resp, err := c.Get(g.URL() + "/api/test/events?mode=" + mode)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
					t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
				}
				if mode == "length" && resp.ContentLength != int64(len(ev1)+len(ev2)) {
					t.Errorf("Content-Length %d", resp.ContentLength)
				}
				br := bufio.NewReader(resp.Body)
				readEvent := func() string {
					var ev strings.Builder
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							t.Fatalf("reading event: %v (got %q)", err, ev.String())
						}
						ev.WriteString(line)
						if line == "\n" {
							return ev.String()
						}
					}
				}
				if ev := readEvent(); ev != ev1 {
					t.Fatalf("first event %q", ev)
				}
				firstAt := time.Now()
				if s := secondSent.Load(); s != 0 {
					t.Errorf("the first event arrived %v after the backend sent the second one: the gateway held it back",
						firstAt.Sub(time.Unix(0, s)))
				}
				if d := firstAt.Sub(start); d > 250*time.Millisecond {
					t.Errorf("the first event took %v to arrive (the backend flushed it at once)", d.Round(time.Millisecond))
				}
				if ev := readEvent(); ev != ev2 {
					t.Fatalf("second event %q", ev)
				}
				if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
					t.Errorf("after the events: %q, %v", rest, err)
				}
			})
		}
	})
}

// TestTrailers: trailers of a chunked response reach the client.
func TestTrailers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Checksum")
			h := sha256.New()
			f := w.(http.Flusher)
			for i := range 5 {
				chunk := fmt.Sprintf("chunk %d;", i)
				h.Write([]byte(chunk))
				io.WriteString(w, chunk)
				f.Flush()
			}
			w.Header().Set("X-Checksum", hex.EncodeToString(h.Sum(nil)))
		})
		// The same kind of response written in one piece, so the gateway
		// reads it all at once.
		const oneShot = "HTTP/1.1 200 OK\r\n" +
			"Trailer: X-Checksum\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n" +
			"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n"
		raw := newRawBackend(t, func(c net.Conn) {
			br := bufio.NewReader(c)
			for {
				if _, _, err := readHead(br); err != nil {
					return
				}
				if _, err := io.WriteString(c, oneShot); err != nil {
					return
				}
			}
		})
		routes := simpleRoutes(be.URL) + fmt.Sprintf("  - path: \"/oneshot\"\n    backend: %q\n", raw.URL())
		g := startGateway(t, engine, gatewayConfig(engine, routes))
		c := newClient(t)

		t.Run("flushed chunks", func(t *testing.T) {
			resp, body := get(t, c, g.URL()+"/api/test/trailers")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if want := "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;"; string(body) != want {
				t.Errorf("body %q, want %q", body, want)
			}
			if got := resp.Trailer.Get("X-Checksum"); got != sha(body) {
				t.Errorf("trailer X-Checksum %q, want %q (trailers %v, Content-Length %d)", got, sha(body), resp.Trailer, resp.ContentLength)
			}
		})
		t.Run("one write", func(t *testing.T) {
			resp, body := get(t, c, g.URL()+"/oneshot")
			if resp.StatusCode != 200 || string(body) != "hello" {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
				t.Errorf("trailer X-Checksum %q, want abc123 (trailers %v, Content-Length %d)", got, resp.Trailer, resp.ContentLength)
			}
		})
	})
}

// asciiUpper upper-cases ASCII letters and leaves every other byte as is.
func asciiUpper(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// TestUpgradeTunnel: an Upgrade: websocket exchange switches to a byte
// tunnel both ways.
func TestUpgradeTunnel(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
				!strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
				http.Error(w, "upgrade expected; got Upgrade="+r.Header.Get("Upgrade")+" Connection="+r.Header.Get("Connection"), 400)
				return
			}
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\n" +
				"Upgrade: websocket\r\n" +
				"Connection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: " + r.Header.Get("Sec-WebSocket-Key") + "-accepted\r\n\r\n")
			rw.Flush()
			buf := make([]byte, 4096)
			for {
				n, err := rw.Read(buf)
				if n > 0 {
					if _, werr := conn.Write(asciiUpper(buf[:n])); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL)))

		c := dialRaw(t, g.addr, 5*time.Second)
		io.WriteString(c, "GET /api/test/ws HTTP/1.1\r\n"+
			"Host: ws.example\r\n"+
			"Connection: Upgrade\r\n"+
			"Upgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		br := bufio.NewReader(c)
		status, hdr, err := readHead(br)
		if err != nil {
			t.Fatalf("reading the 101: %v (status %q)", err, status)
		}
		if !strings.HasPrefix(status, "HTTP/1.1 101") {
			rest, _ := io.ReadAll(io.LimitReader(br, 512))
			t.Fatalf("status line %q, want 101; headers %v; body %q", status, hdr, rest)
		}
		if !strings.EqualFold(hdr.Get("Upgrade"), "websocket") {
			t.Errorf("Upgrade %q", hdr.Get("Upgrade"))
		}
		if !strings.Contains(strings.ToLower(hdr.Get("Connection")), "upgrade") {
			t.Errorf("Connection %q", hdr.Get("Connection"))
		}
		if got := hdr.Get("Sec-WebSocket-Accept"); got != "dGhlIHNhbXBsZSBub25jZQ==-accepted" {
			t.Errorf("Sec-WebSocket-Accept %q", got)
		}
		for i := range 3 {
			msg := fmt.Sprintf("ping %d \x00\xff binary", i)
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatalf("round %d: write: %v", i, err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatalf("round %d: read: %v (got %q)", i, err, got)
			}
			if want := asciiUpper([]byte(msg)); !bytes.Equal(got, want) {
				t.Errorf("round %d: got %q, want %q", i, got, want)
			}
		}
		// Closing our side ends the tunnel: the backend sees EOF, closes,
		// and the gateway closes the client connection.
		c.(*net.TCPConn).CloseWrite()
		if rest, closed, err := readAllRaw(c); !closed {
			t.Errorf("tunnel not closed after the client's half-close: %q, %v", rest, err)
		}
	})
}

// TestH2C: HTTP/2 cleartext with prior knowledge on the proxy port.
func TestH2C(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		rec := &recorder{}
		be := newBackend(t, echoHandler(rec))
		big := newBackend(t, bigBodyHandler)
		routes := simpleRoutes(be.URL) + fmt.Sprintf("  - path: \"/big\"\n    backend: %q\n", big.URL)
		g := startGateway(t, engine, gatewayConfig(engine, routes))

		tr := &http2.Transport{
			AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
		t.Cleanup(tr.CloseIdleConnections)
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}

		t.Run("GET", func(t *testing.T) {
			req, _ := http.NewRequest("GET", g.URL()+"/api/test/h2?x=1", nil)
			req.Header.Set("X-H2", "yes")
			resp, body := do(t, c, req)
			if resp.ProtoMajor != 2 {
				t.Errorf("proto %s, want HTTP/2.0", resp.Proto)
			}
			if resp.StatusCode != 201 {
				t.Fatalf("status %d: %q", resp.StatusCode, body)
			}
			if string(body) != "GET /api/test/h2?x=1" {
				t.Errorf("body %q", body)
			}
			got := rec.last(t)
			if got.RequestURI != "/api/test/h2?x=1" || got.Header.Get("X-H2") != "yes" {
				t.Errorf("backend saw %q with X-H2 %q", got.RequestURI, got.Header.Get("X-H2"))
			}
			if !hexID.MatchString(resp.Header.Get("X-Request-Id")) {
				t.Errorf("X-Request-Id %q", resp.Header.Get("X-Request-Id"))
			}
		})
		t.Run("POST 1MiB", func(t *testing.T) {
			data := randomBytes(t, 1<<20)
			req, _ := http.NewRequest("POST", g.URL()+"/big", bytes.NewReader(data))
			req.Header.Set("X-Resp-Mode", "chunked")
			resp, body := do(t, c, req)
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
				t.Fatalf("status %d, proto %s", resp.StatusCode, resp.Proto)
			}
			if resp.Header.Get("X-Req-Sha256") != sha(data) {
				t.Errorf("request body hash mismatch at the backend")
			}
			if sha(body) != resp.Header.Get("X-Resp-Sha256") || len(body) != 1<<20 {
				t.Errorf("response body mismatch (%d bytes)", len(body))
			}
		})
		t.Run("404", func(t *testing.T) {
			resp, body := get(t, c, g.URL()+"/nowhere")
			checkErrorResponse(t, resp, body, 404)
		})
	})
}
