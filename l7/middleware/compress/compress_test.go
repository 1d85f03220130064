package compress

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/l7/middleware"
)

// decode decodes body per its Content-Encoding ("" : as it is).
func decode(t testing.TB, coding string, body []byte) []byte {
	t.Helper()
	var r io.Reader
	switch coding {
	case "":
		return body
	case "gzip":
		zr, err := stdgzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	default:
		t.Fatalf("unexpected Content-Encoding %q", coding)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", coding, err)
	}
	return out
}

func newTestHandler(t testing.TB, edit func(s *Settings)) *handler {
	t.Helper()
	s := DefaultSettings()
	if edit != nil {
		edit(s)
	}
	h, err := newHandler(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// jsonBody returns n bytes of JSON-looking text.
func jsonBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"item %d","tags":["a","b"]},`, i, i*7)
	}
	return b.Bytes()[:n]
}

// send runs a response through h as the proxy does: FilterResponseBody,
// the body in pieces of size piece (flushing after each when flush), then
// Close. It returns whether a filter was used.
func send(t testing.TB, h *handler, ex *fakeExchange, body []byte, piece int, flush bool) bool {
	t.Helper()
	if h.ResponseNeeds(ex) == middleware.NeedNone {
		ex.Write(body)
		return false
	}
	f := h.FilterResponseBody(ex, ex)
	if f == nil {
		ex.Write(body)
		return false
	}
	for len(body) > 0 {
		n := min(piece, len(body))
		if _, err := f.Write(body[:n]); err != nil {
			t.Fatal(err)
		}
		if flush {
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		body = body[n:]
	}
	if err := f.Close(true); err != nil {
		t.Fatal(err)
	}
	return true
}

// TestEachEncodingDecodes: every encoding gives back the original bytes,
// for a body of known and of unknown length, sent in pieces, with and
// without flushes.
func TestEachEncodingDecodes(t *testing.T) {
	body := jsonBody(300 << 10)
	for _, coding := range []string{"gzip", "zstd", "br"} {
		for _, known := range []bool{true, false} {
			for _, flush := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/length=%v/flush=%v", coding, known, flush), func(t *testing.T) {
					h := newTestHandler(t, nil)
					resp := [][2]string{{"Content-Type", "application/json"}}
					if known {
						resp = append(resp, [2]string{"Content-Length", fmt.Sprint(len(body))})
					}
					ex := newExchange([][2]string{{"Accept-Encoding", coding}}, resp)
					if !send(t, h, ex, body, 7000, flush) {
						t.Fatal("no filter")
					}
					if got := ex.respHeader("Content-Encoding"); got != coding {
						t.Fatalf("Content-Encoding %q, want %q", got, coding)
					}
					if ex.body.Len() >= len(body)/3 {
						t.Fatalf("%d bytes compressed to %d", len(body), ex.body.Len())
					}
					if got := decode(t, coding, ex.body.Bytes()); !bytes.Equal(got, body) {
						t.Fatalf("decoded %d bytes, differing from the %d sent", len(got), len(body))
					}
				})
			}
		}
	}
}

// TestNegotiate: q-values, "*", exclusions, ties broken by the configured
// order, aliases and malformed weights.
func TestNegotiate(t *testing.T) {
	prefs := []*algorithm{algorithms[zstdID], algorithms[brotliID], algorithms[gzipID]}
	cases := []struct {
		accept []string
		want   string
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"identity"}, ""},
		{[]string{"gzip"}, "gzip"},
		{[]string{"GZip"}, "gzip"},
		{[]string{"x-gzip"}, "gzip"},
		{[]string{"gzip, deflate, br"}, "br"},
		{[]string{"gzip, deflate, br, zstd"}, "zstd"},
		{[]string{"br;q=0.5, gzip;q=0.8"}, "gzip"},
		{[]string{"br;q=1.0, gzip;q=0.999"}, "br"},
		{[]string{"zstd;q=0, gzip"}, "gzip"},
		{[]string{"*"}, "zstd"},
		{[]string{"*;q=0.5, gzip;q=0.6"}, "gzip"},
		{[]string{"*, zstd;q=0"}, "br"},
		{[]string{"*;q=0"}, ""},
		{[]string{"gzip;q=0"}, ""},
		{[]string{"gzip; q=0.5 ;foo=bar, br;q=0.4"}, "gzip"},
		{[]string{"gzip;q=2"}, ""},
		{[]string{"gzip;q=abc, br;q=0.1"}, "br"},
		{[]string{"gzip;q=0.0001"}, ""},
		{[]string{"deflate", "br"}, "br"},
		{[]string{"gzip;q=0.2", "gzip;q=0.9, br;q=0.5"}, "gzip"},
		{[]string{" , ,gzip ,"}, "gzip"},
	}
	for _, c := range cases {
		var vals [][]byte
		for _, v := range c.accept {
			vals = append(vals, []byte(v))
		}
		got := ""
		if a, ok := negotiate(vals, prefs); ok {
			got = a.token
		}
		if got != c.want {
			t.Errorf("Accept-Encoding %q: chose %q, want %q", c.accept, got, c.want)
		}
	}
	// The configured order decides ties.
	gzFirst := []*algorithm{algorithms[gzipID], algorithms[brotliID]}
	if a, _ := negotiate([][]byte{[]byte("br, gzip, zstd")}, gzFirst); a != algorithms[gzipID] {
		t.Errorf("tie with gzip preferred: chose %v", a.token)
	}
}

// TestNotCompressed: responses that must go out untouched, and what of
// their head changes (Vary only when the response could be compressed).
func TestNotCompressed(t *testing.T) {
	body := jsonBody(4096)
	json := [2]string{"Content-Type", "application/json"}
	cases := []struct {
		name     string
		method   string
		req      [][2]string
		status   int
		resp     [][2]string
		wantVary string
	}{
		{"already encoded", "", nil, 200, [][2]string{json, {"Content-Encoding", "gzip"}}, ""},
		{"identity encoding", "", nil, 200, [][2]string{json, {"Content-Encoding", "identity"}}, ""},
		{"no-transform", "", nil, 200, [][2]string{json, {"Cache-Control", "public, No-Transform"}}, ""},
		{"image", "", nil, 200, [][2]string{{"Content-Type", "image/png"}}, ""},
		{"no content type", "", nil, 200, nil, ""},
		{"partial content", "", nil, 206, [][2]string{json}, ""},
		{"HEAD", "HEAD", nil, 200, [][2]string{json}, ""},
		{"range request", "", [][2]string{{"Range", "bytes=0-9"}}, 200, [][2]string{json}, ""},
		{"short", "", nil, 200, [][2]string{json, {"Content-Length", "1023"}}, ""},
		{"not accepted", "", [][2]string{{"Accept-Encoding", "deflate"}}, 200, [][2]string{json}, "Accept-Encoding"},
		{"identity only", "", [][2]string{{"Accept-Encoding", "identity, *;q=0"}}, 404, [][2]string{json}, "Accept-Encoding"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newTestHandler(t, nil)
			req := c.req
			if req == nil {
				req = [][2]string{{"Accept-Encoding", "gzip, br, zstd"}}
			}
			ex := newExchange(req, c.resp)
			ex.status = c.status
			if c.method != "" {
				ex.method = c.method
			}
			if send(t, h, ex, body, len(body), false) {
				t.Fatal("a filter was installed")
			}
			if got := ex.respHeader("Content-Encoding"); got != "" && got != "gzip" && got != "identity" {
				t.Fatalf("Content-Encoding %q", got)
			}
			if got := ex.respHeader("Vary"); got != c.wantVary {
				t.Fatalf("Vary %q, want %q", got, c.wantVary)
			}
			if !bytes.Equal(ex.body.Bytes(), body) {
				t.Fatal("body changed")
			}
		})
	}
}

// TestHeadOfCompressed: Vary merged, ETag weakened, Accept-Ranges gone.
func TestHeadOfCompressed(t *testing.T) {
	cases := []struct {
		vary, etag         string
		wantVary, wantETag string
	}{
		{"", `"abc"`, "Accept-Encoding", `W/"abc"`},
		{"Origin", `W/"abc"`, "Origin, Accept-Encoding", `W/"abc"`},
		{"Origin, accept-encoding", "", "Origin, accept-encoding", ""},
		{"*", "", "*", ""},
		{" ", "", "Accept-Encoding", ""},
	}
	for _, c := range cases {
		resp := [][2]string{{"Content-Type", "text/html; charset=utf-8"}, {"Accept-Ranges", "bytes"}}
		if c.vary != "" {
			resp = append(resp, [2]string{"Vary", c.vary})
		}
		if c.etag != "" {
			resp = append(resp, [2]string{"ETag", c.etag})
		}
		ex := newExchange([][2]string{{"Accept-Encoding", "br"}}, resp)
		body := jsonBody(5000)
		send(t, newTestHandler(t, nil), ex, body, 1000, false)
		if ex.respHeader("Content-Encoding") != "br" || ex.respHeader("Accept-Ranges") != "" {
			t.Fatalf("head %q", ex.respHdr)
		}
		if got := ex.respHeader("Vary"); got != c.wantVary {
			t.Errorf("Vary %q: got %q, want %q", c.vary, got, c.wantVary)
		}
		if got := ex.respHeader("ETag"); got != c.wantETag {
			t.Errorf("ETag %q: got %q, want %q", c.etag, got, c.wantETag)
		}
		if got := decode(t, "br", ex.body.Bytes()); !bytes.Equal(got, body) {
			t.Fatal("body differs")
		}
	}
}

// TestContentTypes: the default list and configured patterns.
func TestContentTypes(t *testing.T) {
	h := newTestHandler(t, nil)
	for ct, want := range map[string]bool{
		"text/html":                       true,
		"TEXT/Plain; charset=utf-8":       true,
		"text/event-stream":               true,
		"application/json":                true,
		"application/problem+json":        true,
		"application/json; charset=utf-8": true,
		"application/rss+xml":             true,
		"image/svg+xml":                   true,
		"application/wasm":                true,
		"application/javascript":          true,
		"image/png":                       false,
		"application/octet-stream":        false,
		"application/grpc":                false,
		"application/jsonx":               false,
		"+json":                           false,
		"text":                            false,
	} {
		if got := h.compressible([]byte(ct)); got != want {
			t.Errorf("%q: compressible %v, want %v", ct, got, want)
		}
	}
	h = newTestHandler(t, func(s *Settings) { s.ContentTypes = []string{"application/vnd.api+json"} })
	if !h.compressible([]byte("application/vnd.api+json")) || h.compressible([]byte("text/html")) {
		t.Error("configured content_types not applied")
	}
}

// TestThresholdUnknownLength: without a Content-Length, the first
// min_length bytes are held: a shorter body goes out as it is (and its
// head after the decision), a longer one compressed.
func TestThresholdUnknownLength(t *testing.T) {
	for _, n := range []int{0, 1, 1023, 1024, 1025, 100 << 10} {
		ex := newExchange([][2]string{{"Accept-Encoding", "gzip"}}, [][2]string{{"Content-Type", "text/plain"}})
		body := jsonBody(n)
		send(t, newTestHandler(t, nil), ex, body, 100, false)
		coding := ex.respHeader("Content-Encoding")
		if want := n >= 1024; (coding == "gzip") != want {
			t.Fatalf("%d bytes: Content-Encoding %q", n, coding)
		}
		if ex.respHeader("Vary") != "Accept-Encoding" {
			t.Fatalf("%d bytes: Vary %q", n, ex.respHeader("Vary"))
		}
		if got := decode(t, coding, ex.body.Bytes()); !bytes.Equal(got, body) {
			t.Fatalf("%d bytes: body differs", n)
		}
	}
	// Known lengths are decided at once, min_length: 0 compresses all.
	ex := newExchange([][2]string{{"Accept-Encoding", "gzip"}}, [][2]string{{"Content-Type", "text/plain"}, {"Content-Length", "10"}})
	send(t, newTestHandler(t, func(s *Settings) { s.MinLength = 0 }), ex, []byte("0123456789"), 10, false)
	if ex.respHeader("Content-Encoding") != "gzip" {
		t.Fatal("min_length 0 did not compress a 10-byte body")
	}
	// An empty body stays empty.
	ex = newExchange([][2]string{{"Accept-Encoding", "gzip"}}, [][2]string{{"Content-Type", "text/plain"}, {"Content-Length", "0"}})
	if send(t, newTestHandler(t, func(s *Settings) { s.MinLength = 0 }), ex, nil, 1, false) || ex.body.Len() != 0 {
		t.Fatalf("an empty body was compressed to %d bytes", ex.body.Len())
	}
}

// TestStreamFlushes: each flush of a stream (an SSE event) reaches the
// client decodable at once, before the next, in every encoding; a flush
// before min_length bytes starts compression.
func TestStreamFlushes(t *testing.T) {
	for _, coding := range []string{"gzip", "zstd", "br"} {
		h := newTestHandler(t, nil)
		ex := newExchange([][2]string{{"Accept-Encoding", coding}}, [][2]string{{"Content-Type", "text/event-stream"}})
		f := h.FilterResponseBody(ex, ex)
		var sent []byte
		for i := range 5 {
			ev := fmt.Appendf(nil, "id: %d\ndata: {\"n\":%d}\n\n", i, i)
			sent = append(sent, ev...)
			f.Write(ev)
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			if ex.flushes != i+1 {
				t.Fatalf("%s: %d flushes passed on after %d events", coding, ex.flushes, i+1)
			}
			if got := decodePrefix(t, coding, ex.body.Bytes()); !bytes.Equal(got, sent) {
				t.Fatalf("%s: after event %d the client can decode %q, want %q", coding, i, got, sent)
			}
		}
		f.Close(true)
		if got := decode(t, coding, ex.body.Bytes()); !bytes.Equal(got, sent) {
			t.Fatalf("%s: whole stream %q", coding, got)
		}
	}
}

// decodePrefix decodes what a client can of an unfinished stream.
func decodePrefix(t *testing.T, coding string, body []byte) []byte {
	var r io.Reader
	switch coding {
	case "gzip":
		zr, err := stdgzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		r = brotli.NewReader(bytes.NewReader(body))
	}
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out
		}
	}
}

// TestAbortedBodyReleases: a body cut short writes nothing more, and the
// encoder goes back to its pool, reusable for a whole new stream.
func TestAbortedBodyReleases(t *testing.T) {
	h := newTestHandler(t, nil)
	ex := newExchange([][2]string{{"Accept-Encoding", "zstd"}}, [][2]string{{"Content-Type", "text/plain"}})
	f := h.FilterResponseBody(ex, ex)
	f.Write(jsonBody(64 << 10))
	n := ex.body.Len()
	if err := f.Close(false); err != nil {
		t.Fatal(err)
	}
	if ex.body.Len() != n {
		t.Fatal("an aborted body got more bytes")
	}
	body := jsonBody(10 << 10)
	ex = newExchange([][2]string{{"Accept-Encoding", "zstd"}}, [][2]string{{"Content-Type", "text/plain"}})
	send(t, h, ex, body, 512, false)
	if got := decode(t, "zstd", ex.body.Bytes()); !bytes.Equal(got, body) {
		t.Fatal("a reused encoder produced a wrong stream")
	}
}

// TestFilterAllocations: once the pools are warm, compressing a response
// allocates nothing in the middleware (negotiation, decisions, encoders).
func TestFilterAllocations(t *testing.T) {
	body := jsonBody(64 << 10)
	for _, coding := range []string{"gzip", "zstd", "br"} {
		h := newTestHandler(t, nil)
		req := [][2]string{{"Accept-Encoding", "gzip;q=0.5, deflate, br, zstd;q=0.9"}}
		if coding != "br" {
			req = [][2]string{{"Accept-Encoding", coding}}
		}
		resp := [][2]string{{"Content-Type", "application/json"}, {"Content-Length", "65536"}}
		ex := newExchange(req, resp)
		ex.body.Grow(1 << 20)
		ex.respHdr = make([][2]string, 0, 8)
		run := func() {
			ex.body.Reset()
			ex.headAt = -1
			ex.respHdr = append(ex.respHdr[:0], resp...)
			f := h.FilterResponseBody(ex, ex)
			f.Write(body[:32<<10])
			f.Write(body[32<<10:])
			f.Close(true)
		}
		for range 3 {
			run()
		}
		n := testing.AllocsPerRun(20, run)
		t.Logf("%s: %.1f allocations per response, %d bytes out", coding, n, ex.body.Len())
		if raceEnabled {
			continue // sync.Pool drops items under -race
		}
		if n > 0 {
			t.Errorf("%s: %.1f allocations per compressed response", coding, n)
		}
		if ex.respHeader("Content-Encoding") != coding {
			t.Fatalf("%s: %q", coding, ex.respHdr)
		}
	}
}

// TestValidate: every settings problem names its key.
func TestValidate(t *testing.T) {
	check := func(s *Settings) []string {
		var errs []string
		c := config.NewSettingsCheck(true, false, nil, func(field, msg string) { errs = append(errs, field+": "+msg) })
		s.Validate(c)
		return errs
	}
	if errs := check(DefaultSettings()); len(errs) > 0 {
		t.Fatalf("defaults: %v", errs)
	}
	cases := []struct {
		edit func(s *Settings)
		want string
	}{
		{func(s *Settings) { s.Encodings = nil }, "encodings: must list"},
		{func(s *Settings) { s.Encodings = []string{"gzip", "deflate"} }, `encodings[1]: unknown encoding "deflate"`},
		{func(s *Settings) { s.Encodings = []string{"gzip", "GZIP"} }, `encodings[1]: encoding "GZIP" is listed twice`},
		{func(s *Settings) { s.MinLength = -1 }, "min_length: must be between 0"},
		{func(s *Settings) { s.MinLength = 2 << 20 }, "min_length: must be between 0"},
		{func(s *Settings) { s.ContentTypes = nil }, "content_types: must list"},
		{func(s *Settings) { s.ContentTypes = []string{"text/html", "json"} }, `content_types[1]: "json" is not a media type`},
		{func(s *Settings) { s.ContentTypes = []string{"text/html; charset=utf-8"} }, "content_types[0]:"},
		{func(s *Settings) { s.ContentTypes = []string{"*/*"} }, "content_types[0]:"},
		{func(s *Settings) { s.GzipLevel = 0 }, "gzip_level: must be between 1 and 9, got 0"},
		{func(s *Settings) { s.ZstdLevel = 23 }, "zstd_level: must be between 1 and 22"},
		{func(s *Settings) { s.BrotliLevel = 12 }, "brotli_level: must be between 0 and 11"},
	}
	for _, c := range cases {
		s := DefaultSettings()
		c.edit(s)
		errs := check(s)
		if len(errs) != 1 || !strings.HasPrefix(errs[0], c.want) {
			t.Errorf("want one error %q, got %q", c.want, errs)
		}
	}
}

// TestBuild: the module builds from its settings, declares the body
// phase, and never blocks.
func TestBuild(t *testing.T) {
	mod, ok := middleware.Lookup("compress")
	if !ok || mod.Order != 70 {
		t.Fatalf("module not registered at order 70: %+v", mod)
	}
	in, err := mod.New(middleware.Build{Settings: mod.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	if in.Caps.MayBlock || in.Caps.Phases&middleware.PhaseResponseBody == 0 {
		t.Fatalf("capabilities %+v", in.Caps)
	}
	if _, ok := in.Handler.(middleware.ResponseBodyFilter); !ok {
		t.Fatal("no body filter")
	}
	if _, err := mod.New(middleware.Build{}); err == nil {
		t.Fatal("built without settings")
	}
}
