package l7

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/rustygate/rustygate/l7/middleware"
)

// upperFilter is a body filter written for the contract's tests: it
// upper-cases the body, holds the first `hold` bytes before deciding (and
// marks the head then), and counts its closes.
type upperFilter struct {
	hold int
	// holdOnFlush: a flush before hold bytes does not decide.
	holdOnFlush bool
	closes      atomic.Int32
	clean       atomic.Int32
}

func (u *upperFilter) Handle(r middleware.Request) *middleware.Reply { return nil }
func (u *upperFilter) ResponseNeeds(ex middleware.Exchange) middleware.ResponseNeeds {
	return middleware.NeedResponse
}
func (u *upperFilter) OnResponse(ex middleware.Exchange) error { return nil }
func (u *upperFilter) ResponseFailure() *middleware.Reply      { return nil }

func (u *upperFilter) FilterResponseBody(ex middleware.Exchange, dst middleware.BodyWriter) middleware.BodyFilter {
	if ex.Header("x-no-filter") != nil {
		ex.AddResponseHeader("X-Filter", "declined")
		return nil
	}
	return &upperBody{u: u, ex: ex, dst: dst}
}

type upperBody struct {
	u       *upperFilter
	ex      middleware.Exchange
	dst     middleware.BodyWriter
	held    []byte
	decided bool
}

func (b *upperBody) decide() error {
	b.decided = true
	b.ex.SetResponseHeader("X-Filter", fmt.Sprintf("decided-after-%d", len(b.held)))
	_, err := b.dst.Write(bytes.ToUpper(b.held))
	return err
}

func (b *upperBody) Write(p []byte) (int, error) {
	if !b.decided {
		b.held = append(b.held, p...)
		if len(b.held) < b.u.hold {
			return len(p), nil
		}
		return len(p), b.decide()
	}
	return b.dst.Write(bytes.ToUpper(p))
}

func (b *upperBody) Flush() error {
	if !b.decided && b.u.holdOnFlush {
		return nil
	}
	if !b.decided {
		if err := b.decide(); err != nil {
			return err
		}
	}
	return b.dst.Flush()
}

func (b *upperBody) Close(complete bool) error {
	b.u.closes.Add(1)
	if !complete {
		return nil
	}
	b.u.clean.Add(1)
	if !b.decided {
		return b.decide()
	}
	return nil
}

func useChain(gw *testGateway, in middleware.Instance) {
	for _, rt := range gw.srv.Snapshot().Routes {
		rt.chain = []middleware.Instance{in}
	}
}

// TestBodyFilterContract: a filter's body replaces the backend's on every
// engine, streamed without Content-Length, with the head written only
// once the filter decided (so the header it set then is in it); a filter
// declined leaves the response as it was.
func TestBodyFilterContract(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "26")
		io.WriteString(w, "abcdefghijklmnopqrstuvwxyz")
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
			u := &upperFilter{hold: 10}
			phases := middleware.PhaseRequest | middleware.PhaseResponse | middleware.PhaseResponseBody
			in := middleware.Instance{Handler: u, Caps: middleware.Capabilities{Phases: phases}}
			if err := checkInstance(in); err != nil {
				t.Fatal(err)
			}
			useChain(gw, in)
			out, _ := rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			resp, body := parseRaw(t, out)
			if string(body) != "ABCDEFGHIJKLMNOPQRSTUVWXYZ" || resp.Header.Get("X-Filter") != "decided-after-26" {
				t.Fatalf("filtered response:\n%s", out)
			}
			if resp.ContentLength != -1 || !slicesHas(resp.TransferEncoding, "chunked") {
				t.Fatalf("filtered body not streamed chunked:\n%s", out)
			}
			out, _ = rawExchange(t, gw.addr, "GET /x HTTP/1.0\r\nHost: a\r\n\r\n")
			if resp, body := parseRaw(t, out); string(body) != "ABCDEFGHIJKLMNOPQRSTUVWXYZ" || resp.Header.Get("Connection") == "keep-alive" {
				t.Fatalf("HTTP/1.0 client, filtered response:\n%s", out)
			}
			out, _ = rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nX-No-Filter: 1\r\nConnection: close\r\n\r\n")
			if resp, body := parseRaw(t, out); string(body) != "abcdefghijklmnopqrstuvwxyz" || resp.ContentLength != 26 || resp.Header.Get("X-Filter") != "declined" {
				t.Fatalf("declined filter:\n%s", out)
			}
			if u.closes.Load() != 2 || u.clean.Load() != 2 {
				t.Fatalf("filters closed %d times, %d complete; want 2, 2", u.closes.Load(), u.clean.Load())
			}
		})
	}
	if err := checkInstance(middleware.Instance{Handler: stampPolicy{}, Caps: middleware.Capabilities{Phases: middleware.PhaseResponse | middleware.PhaseResponseBody}}); err == nil || !strings.Contains(err.Error(), "body filter") {
		t.Fatalf("a handler without a body filter declaring the phase: %v", err)
	}
}

func slicesHas(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func parseRaw(t *testing.T, raw string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("%v in:\n%s", err, raw)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v in:\n%s", err, raw)
	}
	return resp, body
}

// TestBodyFilterLateHead: a head written after much of the body was read
// (the filter holds 200 KiB before deciding) is the backend's head, not
// bytes of the body that reused the buffer it was read into.
func TestBodyFilterLateHead(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 16<<10)
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "a header the body must not overwrite")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
			phases := middleware.PhaseRequest | middleware.PhaseResponse | middleware.PhaseResponseBody
			useChain(gw, middleware.Instance{Handler: &upperFilter{hold: 200 << 10, holdOnFlush: true}, Caps: middleware.Capabilities{Phases: phases}})
			out, _ := rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			resp, got := parseRaw(t, out)
			if resp.Header.Get("X-Backend") != "a header the body must not overwrite" || resp.Header.Get("Content-Type") != "text/plain" {
				t.Fatalf("head written after the body was read: %q", resp.Header)
			}
			if held, _ := strconv.Atoi(strings.TrimPrefix(resp.Header.Get("X-Filter"), "decided-after-")); !bytes.Equal(got, bytes.ToUpper(body)) || held < 200<<10 {
				t.Fatalf("body of %d bytes, X-Filter %q", len(got), resp.Header.Get("X-Filter"))
			}
		})
	}
}

// compressInstance builds the compress module from the registry, with
// its default settings.
func compressInstance(t testing.TB) middleware.Instance {
	t.Helper()
	mod, ok := middleware.Lookup("compress")
	if !ok {
		t.Fatal("compress is not linked")
	}
	in, err := mod.New(middleware.Build{Settings: mod.Settings(), Route: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkInstance(in); err != nil {
		t.Fatal(err)
	}
	return in
}

// decodeBody decodes a response body by its Content-Encoding.
func decodeBody(t testing.TB, coding string, r io.Reader) io.Reader {
	t.Helper()
	switch coding {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		return zr
	case "br":
		return brotli.NewReader(r)
	case "zstd":
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(zr.Close)
		return zr
	}
	return r
}

// TestCompressStreams: through the compress module on every engine (and
// HTTP/2), each encoding decodes to the backend's bytes; an SSE stream
// reaches the client event by event; a large body's first bytes reach
// the client while the backend still holds the rest back.
func TestCompressStreams(t *testing.T) {
	body := bytes.Repeat([]byte(`{"id":12345,"name":"compressible","tags":["a","b","c"]},`), 4000)
	release := make(chan struct{}, 1)
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: event %d\n\n", i)
				w.(http.Flusher).Flush()
				<-release // the client has read the event
			}
		case "/held":
			w.Header().Set("Content-Type", "application/json")
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			<-release
			w.Write(body[len(body)/2:])
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		}
	})
	for _, engine := range append(engines, "h2c") {
		t.Run(engine, func(t *testing.T) {
			client := http.DefaultClient
			gwEngine := engine
			if engine == "h2c" {
				client, gwEngine = h2cClient(t), "fast"
			} else {
				client = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second}
				t.Cleanup(client.CloseIdleConnections)
			}
			gw := startGateway(t, gwEngine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
			useChain(gw, compressInstance(t))
			get := func(path, accept string) *http.Response {
				req, _ := http.NewRequest("GET", "http://"+gw.addr+path, nil)
				req.Header.Set("Accept-Encoding", accept)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resp.Body.Close() })
				return resp
			}
			for _, coding := range []string{"gzip", "br", "zstd"} {
				resp := get("/json", coding)
				got, err := io.ReadAll(decodeBody(t, resp.Header.Get("Content-Encoding"), resp.Body))
				if err != nil || resp.Header.Get("Content-Encoding") != coding || !bytes.Equal(got, body) {
					t.Fatalf("%s: %v, Content-Encoding %q, %d bytes decoded", coding, err, resp.Header.Get("Content-Encoding"), len(got))
				}
			}
			resp := get("/sse", "gzip")
			events := bufio.NewReader(decodeBody(t, "gzip", resp.Body))
			for i := range 3 {
				want := fmt.Sprintf("data: event %d\n", i)
				if line, err := events.ReadString('\n'); line != want {
					t.Fatalf("event %d: %q, %v", i, line, err)
				}
				events.ReadString('\n')
				release <- struct{}{}
			}
			resp = get("/held", "br")
			first := make([]byte, 1000)
			if _, err := io.ReadFull(decodeBody(t, "br", resp.Body), first); err != nil || !bytes.Equal(first, body[:1000]) {
				t.Fatalf("first bytes before the backend finished: %v", err)
			}
			release <- struct{}{}
		})
	}
}

// TestCompressLargeBodyMemory: an 8 MiB body is compressed as it streams:
// what the process allocates for it stays far below the body's size.
func TestCompressLargeBodyMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation figures are meaningless under -race")
	}
	chunk := bytes.Repeat([]byte(`{"k":"some text that compresses","n":123456789},`), 1300)
	const total = 8 << 20
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for n := 0; n < total; n += len(chunk) {
			w.Write(chunk[:min(len(chunk), total-n)])
		}
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
			useChain(gw, compressInstance(t))
			fetch := func() int64 {
				c, err := net.Dial("tcp", gw.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReaderSize(c, 64<<10), nil)
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.Copy(io.Discard, decodeBody(t, "gzip", resp.Body))
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			fetch() // warm the pools
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			n := fetch()
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%s: %d bytes decoded; %d bytes allocated in the process (gateway, backend and client)", engine, n, alloc)
			if n != total {
				t.Fatalf("decoded %d bytes, want %d", n, total)
			}
			if alloc > 2<<20 {
				t.Fatalf("%d bytes allocated to stream an %d-byte body: it is being held", alloc, total)
			}
		})
	}
}

// TestCompressClientGone: a client that leaves in the middle of a
// compressed body ends the exchange: the backend's request is cancelled,
// nothing is left running (goleak in TestMain).
func TestCompressClientGone(t *testing.T) {
	gone := make(chan struct{}, 4)
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		line := bytes.Repeat([]byte("streaming line of text\n"), 200)
		for {
			if _, err := w.Write(line); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				gone <- struct{}{}
				return
			case <-time.After(time.Millisecond):
			}
		}
		gone <- struct{}{}
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
			useChain(gw, compressInstance(t))
			c, err := net.Dial("tcp", gw.addr)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET /s HTTP/1.1\r\nHost: a\r\nAccept-Encoding: zstd\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.Header.Get("Content-Encoding") != "zstd" {
				t.Fatalf("%v %v", err, resp)
			}
			if _, err := io.ReadFull(decodeBody(t, "zstd", resp.Body), make([]byte, 10000)); err != nil {
				t.Fatal(err)
			}
			c.Close()
			select {
			case <-gone:
			case <-time.After(10 * time.Second):
				t.Fatal("the backend still streams 10 s after the client left")
			}
		})
	}
}

// BenchmarkCompressProxy measures one keep-alive request through the fast
// engine with compress on the route: a 1 KiB JSON response compressed
// with gzip at the default level (client and backend on loopback).
func BenchmarkCompressProxy(b *testing.B) {
	b.Run("gzip", func(b *testing.B) { benchmarkCompressProxy(b, true, "gzip") })
	b.Run("identity", func(b *testing.B) { benchmarkCompressProxy(b, true, "identity") })
	b.Run("no-compress", func(b *testing.B) { benchmarkCompressProxy(b, false, "gzip") })
}

// benchmarkCompressProxy is BenchmarkCompressProxy with or without the
// middleware on the route, the client sending Accept-Encoding accept.
func benchmarkCompressProxy(b *testing.B, compress bool, accept string) {
	doc := bytes.Repeat([]byte(`{"id":100037,"name":"sigma eta","price":24.92},`), 22)[:1024]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"abc\"\r\nContent-Length: 1024\r\n\r\n"), doc...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 16<<10)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			for {
				i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				c.Write(resp)
				n = copy(buf, buf[i+4:n])
			}
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	gw := startGateway(b, "fast", fmt.Sprintf("  - { path: \"/\", backend: \"http://%s\" }\n", ln.Addr()))
	if compress {
		useChain(gw, compressInstance(b))
	}
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	req := []byte("GET /x HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: " + accept + "\r\n\r\n")
	buf := make([]byte, 8192)
	roundTrip := func() {
		c.Write(req)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
			if bytes.HasSuffix(buf[:n], []byte("\r\n0\r\n\r\n")) || bytes.HasSuffix(buf[:n], doc[len(doc)-16:]) {
				return
			}
		}
	}
	for range 100 {
		roundTrip()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
}
