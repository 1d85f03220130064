package l7

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Raw is a raw HTTP/2 client on loopback: frames written and read one by
// one, for the tests of protocol limits and attacks.
type h2Raw struct {
	t   testing.TB
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

// dialH2 connects with prior knowledge, sends the preface and settings
// and reads the server's SETTINGS.
func dialH2(t testing.TB, addr string, settings ...http2.Setting) *h2Raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	h := &h2Raw{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.hb)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	f, err := h.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	return h
}

// block encodes a request head for path (plus extra fields, name then
// value).
func (h *h2Raw) block(method, path string, extra ...string) []byte {
	h.hb.Reset()
	for _, kv := range [][2]string{{":method", method}, {":scheme", "http"}, {":path", path}, {":authority", "gw.test"}} {
		h.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return append([]byte(nil), h.hb.Bytes()...)
}

func (h *h2Raw) request(id uint32, method, path string, end bool, extra ...string) error {
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block(method, path, extra...),
		EndStream: end, EndHeaders: true})
}

// until reads frames until match returns true; it fails the test when
// the connection ends first.
func (h *h2Raw) until(match func(http2.Frame) bool) http2.Frame {
	h.t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("connection ended before the awaited frame: %v", err)
		}
		if match(f) {
			return f
		}
	}
}

// goAwayOrClose reads until GOAWAY or the end of the connection and
// returns the GOAWAY's code (-1: closed without one).
func (h *h2Raw) goAwayOrClose() http2.ErrCode {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return ^http2.ErrCode(0)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			return ga.ErrCode
		}
	}
}

// slowBackend answers after release is closed (or 10s), counting the
// requests in flight and the most seen at once.
type slowBackend struct {
	url            string
	release        chan struct{}
	inFlight, peak atomic.Int64
	once           sync.Once
}

// open lets every request waiting and to come be answered.
func (sb *slowBackend) open() { sb.once.Do(func() { close(sb.release) }) }

func startSlowBackend(t *testing.T) *slowBackend {
	sb := &slowBackend{release: make(chan struct{})}
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		n := sb.inFlight.Add(1)
		defer sb.inFlight.Add(-1)
		for {
			p := sb.peak.Load()
			if n <= p || sb.peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-sb.release:
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "slow")
	})
	sb.url = be.URL
	t.Cleanup(sb.open)
	return sb
}

func h2Route(url string) string {
	return "  - { path: /, backend: \"" + url + "\" }\n"
}

// TestH2MaxConcurrentStreams: streams past SETTINGS_MAX_CONCURRENT_STREAMS
// are refused with REFUSED_STREAM while the others are served.
func TestH2MaxConcurrentStreams(t *testing.T) {
	sb := startSlowBackend(t)
	g := startGateway(t, "fast", h2Route(sb.url))
	defer sb.open()
	h := dialH2(t, g.addr)
	for i := range h2MaxStreams + 1 {
		if err := h.request(uint32(2*i+1), "GET", "/", true); err != nil {
			t.Fatal(err)
		}
	}
	f := h.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if want := uint32(2*h2MaxStreams + 1); f.StreamID != want || f.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("RST_STREAM %d %v, want %d REFUSED_STREAM", f.StreamID, f.ErrCode, want)
	}
	sb.open()
	got := 0
	h.until(func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok && d.StreamEnded() {
			got++
		}
		return got == h2MaxStreams
	})
}

// TestH2RapidReset (CVE-2023-44487): a client that opens and resets
// streams without end is cut off with ENHANCE_YOUR_CALM once the
// exchanges still running reach their bound; the backend never sees
// more than that at once, and the gateway's goroutines stay bounded.
func TestH2RapidReset(t *testing.T) {
	sb := startSlowBackend(t)
	g := startGateway(t, "fast", h2Route(sb.url))
	defer sb.open()
	before := runtime.NumGoroutine()
	h := dialH2(t, g.addr)
	var werr error
	for i := range 20000 {
		id := uint32(2*i + 1)
		if werr = h.request(id, "GET", "/", true); werr != nil {
			break
		}
		if werr = h.fr.WriteRSTStream(id, http2.ErrCodeCancel); werr != nil {
			break
		}
	}
	if code := h.goAwayOrClose(); code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v (write error %v), want ENHANCE_YOUR_CALM", code, werr)
	}
	if peak := sb.peak.Load(); peak > h2MaxHandlers {
		t.Errorf("the backend saw %d requests at once, want at most %d", peak, h2MaxHandlers)
	}
	if n := runtime.NumGoroutine() - before; n > 4*h2MaxHandlers {
		t.Errorf("%d more goroutines during the flood, want at most %d", n, 4*h2MaxHandlers)
	}
}

// TestH2ContinuationFlood (CVE-2024-27316 family): CONTINUATION frames
// without END_HEADERS are refused once the header list passes
// max_header_bytes, long before the client is done sending.
func TestH2ContinuationFlood(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	g := startGatewayServer(t, "fast", "max_header_bytes: 16384", h2Route(be.URL), nil)
	h := dialH2(t, g.addr)
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("GET", "/")}); err != nil {
		t.Fatal(err)
	}
	sent := 0
	var werr error
	go func() {
		for sent < 64<<20 && werr == nil {
			h.hb.Reset()
			h.enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 1000)})
			werr = h.fr.WriteContinuation(1, false, h.hb.Bytes())
			sent += h.hb.Len()
		}
	}()
	if code := h.goAwayOrClose(); code == http2.ErrCodeNo {
		t.Fatalf("GOAWAY NO_ERROR, want a protocol error")
	}
	h.c.Close()
}

// TestH2HPACKBomb: a header block whose dynamic-table references decode
// to far more than max_header_bytes gets a 431 without the gateway
// building the decoded list.
func TestH2HPACKBomb(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	g := startGatewayServer(t, "fast", "max_header_bytes: 16384", h2Route(be.URL), nil)
	h := dialH2(t, g.addr)
	h.hb.Reset()
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "gw.test"}} {
		h.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	// One 4000-byte entry in the dynamic table, then referenced 3000
	// times at one byte each: 12 MB decoded from 16 KB on the wire.
	h.enc.WriteField(hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 4000)})
	block := append([]byte(nil), h.hb.Bytes()...)
	for range 3000 {
		block = append(block, 0x80|62) // indexed: dynamic table entry 1
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	first := true
	for len(block) > 0 {
		n := min(len(block), 16384)
		var err error
		if first {
			err = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:n], EndStream: true, EndHeaders: n == len(block)})
		} else {
			err = h.fr.WriteContinuation(1, n == len(block), block[:n])
		}
		if err != nil {
			t.Fatal(err)
		}
		block, first = block[n:], false
	}
	dec := hpack.NewDecoder(4096, nil)
	var status string
	h.until(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.HeadersFrame:
			fields, _ := dec.DecodeFull(f.HeaderBlockFragment())
			status = fields[0].Value
			return true
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return true
		}
		return false
	})
	runtime.ReadMemStats(&ms1)
	if status != "431" && status != "" {
		t.Fatalf("status %s, want 431 or a reset", status)
	}
	// Copying the decoded list would take 12 MB; the bound leaves room
	// for what the rest of the process allocates meanwhile.
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 8<<20 {
		t.Errorf("%d bytes allocated while refusing the bomb, want under 8 MiB", alloc)
	}
}

// TestH2ControlFloods: PING and SETTINGS floods end with GOAWAY
// ENHANCE_YOUR_CALM instead of unbounded answers.
func TestH2ControlFloods(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	g := startGateway(t, "fast", h2Route(be.URL))
	for name, send := range map[string]func(fr *http2.Framer) error{
		"ping":     func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{1}) },
		"settings": func(fr *http2.Framer) error { return fr.WriteSettings() },
	} {
		t.Run(name, func(t *testing.T) {
			h := dialH2(t, g.addr)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < 1_000_000; i++ {
					if send(h.fr) != nil {
						return
					}
				}
			}()
			if code := h.goAwayOrClose(); code != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
			}
			h.c.Close()
			<-done
		})
	}
}

// TestH2ZeroWindowStall: a client that keeps its window closed gets the
// stream reset after write_timeout, and the exchange ends.
func TestH2ZeroWindowStall(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 100<<10)) })
	g := startGatewayServer(t, "fast", "write_timeout: 500ms", h2Route(be.URL), nil)
	h := dialH2(t, g.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	start := time.Now()
	if err := h.request(1, "GET", "/", true); err != nil {
		t.Fatal(err)
	}
	f := h.until(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if f.ErrCode != http2.ErrCodeCancel {
		t.Fatalf("RST_STREAM %v, want CANCEL", f.ErrCode)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
		t.Errorf("reset after %v, want about write_timeout (500ms)", d)
	}
}

// TestH2RequestBodyFlowControl: request bodies larger than the windows
// flow through with WINDOW_UPDATEs, several at once on one connection.
func TestH2RequestBodyFlowControl(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Got", itoa(n))
	})
	g := startGateway(t, "fast", h2Route(be.URL))
	c := h2cClient(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := int64(3<<20 + i)
			resp, err := c.Post("http://"+g.addr+"/up", "application/octet-stream", io.LimitReader(zeros{}, size))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := resp.Header.Get("X-Got"); got != itoa(size) {
				t.Errorf("backend got %s bytes, want %d", got, size)
			}
		}()
	}
	wg.Wait()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestH2StreamingResponse: a response the backend streams reaches the
// client piece by piece, with its trailers.
func TestH2StreamingResponse(t *testing.T) {
	next := make(chan struct{})
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 3 {
			io.WriteString(w, "part"+itoa(int64(i))+"\n")
			w.(http.Flusher).Flush()
			<-next
		}
		w.Header().Set("X-Sum", "done")
	})
	g := startGateway(t, "fast", h2Route(be.URL))
	resp, err := h2cClient(t).Get("http://" + g.addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	for i := range 3 {
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		if want := "part" + itoa(int64(i)) + "\n"; string(buf) != want {
			t.Fatalf("read %q, want %q", buf, want)
		}
		next <- struct{}{}
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "done" {
		t.Fatalf("trailer X-Sum %q, want done", got)
	}
}

// TestH2GracefulShutdown: Shutdown sends GOAWAY; a stream in flight
// finishes, and the connection then closes.
func TestH2GracefulShutdown(t *testing.T) {
	sb := startSlowBackend(t)
	g := startGateway(t, "fast", h2Route(sb.url))
	h := dialH2(t, g.addr)
	if err := h.request(1, "GET", "/", true); err != nil {
		t.Fatal(err)
	}
	for sb.inFlight.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- g.srv.Shutdown(ctx)
	}()
	ga := h.until(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v last %d, want NO_ERROR last 1", ga.ErrCode, ga.LastStreamID)
	}
	sb.open()
	var body []byte
	h.until(func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok {
			body = append(body, d.Data()...)
			return d.StreamEnded()
		}
		return false
	})
	if string(body) != "slow" {
		t.Fatalf("body %q, want slow", body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	h.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, err := h.fr.ReadFrame()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after shutdown")
		}
		if err != nil {
			break
		}
	}
}

// TestH2IdleTimeout: a connection without streams is told GOAWAY
// (NO_ERROR) after idle_timeout and closed.
func TestH2IdleTimeout(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	g := startGatewayServer(t, "fast", "idle_timeout: 300ms", h2Route(be.URL), nil)
	h := dialH2(t, g.addr)
	start := time.Now()
	if code := h.goAwayOrClose(); code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v, want NO_ERROR", code)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("GOAWAY after %v, want about idle_timeout (300ms)", d)
	}
}

// TestH2InvalidPreface: on the plain port, a line that is neither an
// HTTP/1.x request line nor the HTTP/2 preface ends the connection
// unanswered; a malformed HTTP/1.1 request line still gets its 400.
func TestH2InvalidPreface(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	g := startGateway(t, "fast", h2Route(be.URL))
	if out, closed := rawExchange(t, g.addr, "INVALID CONNECTION PREFACE\r\n\r\n"); out != "" || !closed {
		t.Fatalf("answer %q (closed %v), want none and a close", out, closed)
	}
	if out, _ := rawExchange(t, g.addr, "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"); statusOf(out) != 400 {
		t.Fatalf("malformed HTTP/1.1 line answered %q, want a 400", out)
	}
}
