package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/rustygate/rustygate/upstream"
)

var (
	optDefault = pathOptions{mergeSlashes: true, escapedSlashes: slashesReject}
	optKeep    = pathOptions{mergeSlashes: true, escapedSlashes: slashesKeep}
	optDecode  = pathOptions{mergeSlashes: true, escapedSlashes: slashesDecode}
	optNoMerge = pathOptions{mergeSlashes: false, escapedSlashes: slashesReject}
)

func TestNormalizePath(t *testing.T) {
	cases := []struct {
		in   string
		opt  pathOptions
		want string // "" with err
		err  error
	}{
		{"/", optDefault, "/", nil},
		{"/admin-api", optDefault, "/admin-api", nil},
		{"/%61dmin-api", optDefault, "/admin-api", nil},
		{"/admin%2dapi", optDefault, "/admin-api", nil},
		{"/%61%64%6D%69%6e%2D%61%70%69/x", optDefault, "/admin-api/x", nil},
		{"/%7e%5F%2E%30", optDefault, "/~_.0", nil},
		{"//admin-api", optDefault, "/admin-api", nil},
		{"//admin-api//x///", optDefault, "/admin-api/x/", nil},
		{"//admin-api", optNoMerge, "//admin-api", nil},
		{"/a/b/", optDefault, "/a/b/", nil},
		{"/caf%c3%a9", optDefault, "/caf%C3%A9", nil},
		{"/caf%C3%A9", optDefault, "/caf%C3%A9", nil},
		{"/a%20b%3f%23%25", optDefault, "/a%20b%3F%23%25", nil},
		{"/%2561", optDefault, "/%2561", nil},
		{"/admin-api%2f", optDefault, "", errEncodedSlash},
		{"/%2Fadmin-api", optDefault, "", errEncodedSlash},
		{"/a%5cb", optDefault, "", errEncodedSlash},
		{"/admin-api%2f", optKeep, "/admin-api%2F", nil},
		{"/a%5cb", optKeep, "/a%5Cb", nil},
		{"/admin-api%2fx", optDecode, "/admin-api/x", nil},
		{"/%2fadmin-api", optDecode, "/admin-api", nil},
		{"/%2F%2f/admin-api", optDecode, "/admin-api", nil},
		{"/a%5Cb", optDecode, "/a/b", nil},
		{"/%2fadmin-api", pathOptions{escapedSlashes: slashesDecode}, "//admin-api", nil},
		{"/a\\b", optKeep, "", errBackslash},
		{"/a%00b", optKeep, "", errEncodedNUL},
		{"/a%2", optDefault, "", errBadPath},
		{"/a%zz", optDefault, "", errBadPath},
		// Dot segments, however spelled, are refused.
		{"/a/../b", optDefault, "", errBadPath},
		{"/a/.", optDefault, "", errBadPath},
		{"/%2e%2E/x", optDefault, "", errBadPath},
		{"/.%2e", optDefault, "", errBadPath},
		{"/a%2F..%2Fb", optDecode, "", errBadPath},
		{"/a%2F..%2Fb", optKeep, "", errBadPath},
		{"/x%5C.%5Cadmin", optKeep, "", errBadPath},
		{"/a/...", optDefault, "/a/...", nil},
		{"/a/.b/..c", optDefault, "/a/.b/..c", nil},
		{"*", optDefault, "*", nil},
	}
	for _, tc := range cases {
		got, err := normalizePath(nil, []byte(tc.in), tc.opt)
		if err != tc.err || err == nil && string(got) != tc.want {
			t.Errorf("normalizePath(%q, %+v) = %q, %v; want %q, %v", tc.in, tc.opt, got, err, tc.want, tc.err)
		}
	}
}

// TestNormalizePathNoCopy: a path already in normal form is returned as
// is, and a changed one is built in the scratch buffer without touching
// the input.
func TestNormalizePathNoCopy(t *testing.T) {
	in := []byte("/api/v1/users%20x")
	got, err := normalizePath(nil, in, optDefault)
	if err != nil || &got[0] != &in[0] || len(got) != len(in) {
		t.Fatalf("normalized path was copied: %q %v", got, err)
	}
	in = []byte("//%61pi")
	scratch := make([]byte, 0, 64)
	got, err = normalizePath(scratch, in, optDefault)
	if err != nil || string(got) != "/api" || &got[:1][0] != &scratch[:1][0] {
		t.Fatalf("got %q, %v; want \"/api\" in the scratch buffer", got, err)
	}
	if string(in) != "//%61pi" {
		t.Fatalf("input modified: %q", in)
	}
	if n := testing.AllocsPerRun(100, func() { normalizePath(scratch, in, optDefault) }); n != 0 {
		t.Fatalf("normalizePath allocates %v times with a large enough buffer", n)
	}
}

func TestNormalizeTarget(t *testing.T) {
	cases := []struct{ raw, path, query, target string }{
		{"GET /%61dmin-api?%61=1 HTTP/1.1\r\nHost: h\r\n\r\n", "/admin-api", "?%61=1", "/admin-api?%61=1"},
		{"GET //x HTTP/1.1\r\nHost: h\r\n\r\n", "/x", "", "/x"},
		{"GET http://h//x?q HTTP/1.1\r\nHost: h\r\n\r\n", "/x", "?q", "/x?q"},
		{"GET /plain?q HTTP/1.1\r\nHost: h\r\n\r\n", "/plain", "?q", "/plain?q"},
		{"GET https://h/plain?q HTTP/1.1\r\nHost: h\r\n\r\n", "/plain", "?q", "/plain?q"},
		{"GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", "/", "?q", "/?q"},
		{"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", "/", "", "/"},
		{"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "*", "", "*"},
	}
	var r request
	for _, tc := range cases {
		buf := []byte(tc.raw)
		if _, err := parseRequest(buf, &r); err != nil {
			t.Fatalf("%q: %v", tc.raw, err)
		}
		if err := r.normalizeTarget(optDefault); err != nil {
			t.Fatalf("%q: %v", tc.raw, err)
		}
		if string(r.path) != tc.path || string(r.query) != tc.query || string(r.target) != tc.target {
			t.Errorf("%q: path %q query %q target %q; want %q %q %q", tc.raw, r.path, r.query, r.target, tc.path, tc.query, tc.target)
		}
		if string(buf) != tc.raw {
			t.Errorf("%q: head modified to %q", tc.raw, buf)
		}
	}
}

// FuzzNormalizePath checks the normalizer's invariants on any input and
// settings: the result is a fixed point, and it contains no encoded slash
// (unless kept), no dot segment and no "//" (when merging).
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/%61dmin-api", "//admin-api/x", "/admin-api%2f", "/%2fadmin-api",
		"/a%5c..%5Cb", "/%2e%2E/", "/caf%c3%a9", "/a\\b", "/%252F", "/a/./b", "/x%2F%2f/y//"} {
		for opt := range 6 {
			f.Add(s, uint8(opt))
		}
	}
	f.Fuzz(func(t *testing.T, in string, opt uint8) {
		o := pathOptions{mergeSlashes: opt&1 == 0, escapedSlashes: int(opt>>1) % 3}
		out, err := normalizePath(nil, []byte(in), o)
		if err != nil {
			return
		}
		again, err := normalizePath(nil, out, o)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		upper := bytes.ToUpper(out)
		if o.escapedSlashes != slashesKeep && (bytes.Contains(upper, []byte("%2F")) || bytes.Contains(upper, []byte("%5C"))) {
			t.Fatalf("%q -> %q: encoded slash left", in, out)
		}
		if bytes.IndexByte(out, '\\') >= 0 || bytes.Contains(out, []byte("%00")) {
			t.Fatalf("%q -> %q: backslash or NUL left", in, out)
		}
		if o.mergeSlashes && bytes.Contains(out, []byte("//")) {
			t.Fatalf("%q -> %q: repeated slash left", in, out)
		}
		if !validEscapes(out) || hasDotSegment(out) {
			t.Fatalf("%q -> %q: the parser would refuse it", in, out)
		}
		for i := 0; i < len(out); i++ {
			if out[i] != '%' {
				continue
			}
			if v := unhex(out[i+1])<<4 | unhex(out[i+2]); unreservedByte[v] || bytes.ContainsAny(out[i+1:i+3], "abcdef") {
				t.Fatalf("%q -> %q: escape %q not normalized", in, out, out[i:i+3])
			}
		}
		// A backend that decodes a kept %2F or %5C sees a separator.
		split := bytes.ReplaceAll(bytes.ReplaceAll(out, []byte("%2F"), []byte("/")), []byte("%5C"), []byte("/"))
		for _, seg := range bytes.Split(split, []byte("/")) {
			if string(seg) == "." || string(seg) == ".." {
				t.Fatalf("%q -> %q: dot segment", in, out)
			}
		}
	})
}

// uriRecorder is a backend that records the request-target and Host it
// received, and answers "name".
type uriRecorder struct {
	name string
	mu   sync.Mutex
	seen []string
}

func (u *uriRecorder) start(t *testing.T) string {
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Host+" "+r.RequestURI)
		u.mu.Unlock()
		io.WriteString(w, u.name)
	}).URL
}

func (u *uriRecorder) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return ""
	}
	return u.seen[len(u.seen)-1]
}

// normRoutes: a guarded-looking /admin-api, a stripped /strip with a base
// path, and an open /.
func normRoutes(t *testing.T) (routes string, admin, strip, open *uriRecorder) {
	admin, strip, open = &uriRecorder{name: "admin"}, &uriRecorder{name: "strip"}, &uriRecorder{name: "open"}
	routes = fmt.Sprintf("  - { path: /admin-api, backend: %q }\n  - { path: /strip, strip_prefix: true, backend: \"%s/v2\" }\n  - { path: /, backend: %q }\n",
		admin.start(t), strip.start(t), open.start(t))
	return routes, admin, strip, open
}

// TestPathNormalizationForwarded: the route is chosen on the normalized
// path and the backend receives exactly that path, on every engine.
func TestPathNormalizationForwarded(t *testing.T) {
	type tc struct {
		server, target string
		status         int
		to, seen       string // backend name and the request-target it saw
	}
	cases := []tc{
		{"", "/%61dmin-api/x?%61=1", 200, "admin", "/admin-api/x?%61=1"},
		{"", "//admin-api", 200, "admin", "/admin-api"},
		{"", "/admin%2Dapi", 200, "admin", "/admin-api"},
		{"", "/strip//%61/b", 200, "strip", "/v2/a/b"},
		{"", "/caf%c3%a9?x", 200, "open", "/caf%C3%A9?x"},
		{"", "http://h.example//%61dmin-api?q", 200, "admin", "/admin-api?q"},
		{"", "/admin-api%2f", 400, "", ""},
		{"", "/%2Fadmin-api", 400, "", ""},
		{"", "/admin-api%5Cx", 400, "", ""},
		{"", "/admin-api\\x", 400, "", ""},
		{"", "/x%00", 400, "", ""},
		{"path: { escaped_slashes: decode }", "/%2fadmin-api%2Fx", 200, "admin", "/admin-api/x"},
		{"path: { escaped_slashes: decode }", "/a%2F..%2Fadmin-api", 400, "", ""},
		{"path: { escaped_slashes: keep }", "/admin-api%2fx", 200, "open", "/admin-api%2Fx"},
		{"path: { escaped_slashes: keep }", "/x%2F..%2Fadmin-api", 400, "", ""},
		{"path: { merge_slashes: false }", "//admin-api", 200, "open", "//admin-api"},
	}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gws := map[string]*testGateway{}
			routes, admin, strip, open := normRoutes(t)
			recs := map[string]*uriRecorder{"admin": admin, "strip": strip, "open": open}
			for _, c := range cases {
				gw := gws[c.server]
				if gw == nil {
					gw = startGatewayServer(t, engine, c.server, routes, nil)
					gws[c.server] = gw
				}
				out, _ := rawExchange(t, gw.addr, "GET "+c.target+" HTTP/1.1\r\nHost: h.example\r\nConnection: close\r\n\r\n")
				if got := statusOf(out); got != c.status {
					t.Errorf("%s %q: status %d, want %d\n%s", c.server, c.target, got, c.status, out)
					continue
				}
				if c.to == "" {
					continue
				}
				if !strings.HasSuffix(out, c.to) {
					t.Errorf("%s %q: reached %q, want %s", c.server, c.target, out[strings.LastIndexByte(out, '\n')+1:], c.to)
				}
				if got := recs[c.to].last(); got != "h.example "+c.seen {
					t.Errorf("%s %q: backend saw %q, want %q", c.server, c.target, got, "h.example "+c.seen)
				}
			}
		})
	}
}

// h2cClient is an HTTP/2 client with prior knowledge over cleartext.
func h2cClient(t *testing.T) *http.Client {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// rawPathRequest builds a request whose request-target (":path" on
// HTTP/2) is exactly target.
func rawPathRequest(t *testing.T, base, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", base, nil)
	if err != nil {
		t.Fatal(err)
	}
	path, query, _ := strings.Cut(target, "?")
	if strings.HasPrefix(path, "//") {
		req.URL.Path, _ = url.PathUnescape(path)
		req.URL.RawPath = path
	} else {
		req.URL.Opaque = path
	}
	req.URL.RawQuery = query
	if got := req.URL.RequestURI(); got != target {
		t.Fatalf("cannot send %q: the client sends %q", target, got)
	}
	return req
}

// TestPathNormalizationH2: the same normalization applies to ":path".
func TestPathNormalizationH2(t *testing.T) {
	for _, engine := range []string{"fast", "standard"} {
		t.Run(engine, func(t *testing.T) {
			routes, admin, _, open := normRoutes(t)
			gw := startGateway(t, engine, routes)
			c := h2cClient(t)
			for _, tcase := range []struct {
				target string
				status int
				rec    *uriRecorder
				seen   string
			}{
				{"/%61dmin-api/x", 200, admin, "/admin-api/x"},
				{"//admin-api?q=%61", 200, admin, "/admin-api?q=%61"},
				{"/caf%c3%a9", 200, open, "/caf%C3%A9"},
				{"/admin-api%2f", 400, nil, ""},
				{"/%2fadmin-api", 400, nil, ""},
				{"/a\\b", 400, nil, ""},
			} {
				resp, err := c.Do(rawPathRequest(t, "http://"+gw.addr, tcase.target))
				if err != nil {
					t.Fatalf("%q: %v", tcase.target, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 || resp.StatusCode != tcase.status {
					t.Errorf("%q: %s %d, want HTTP/2 %d", tcase.target, resp.Proto, resp.StatusCode, tcase.status)
					continue
				}
				if tcase.rec != nil && tcase.rec.last() != gw.addr+" "+tcase.seen {
					t.Errorf("%q: backend saw %q, want %q", tcase.target, tcase.rec.last(), gw.addr+" "+tcase.seen)
				}
			}
		})
	}
}

// TestNormalizedRequestHead: plugins see the normalized URI, a plugin's
// rewrite still replaces it, and the forwarded request line and Host are
// the normalized path and the validated authority.
func TestNormalizedRequestHead(t *testing.T) {
	var r request
	raw := "GET http://secure.example//%61pi/x?q HTTP/1.1\r\nHost: other.example\r\nX-A: 1\r\n\r\n"
	if _, err := parseRequest([]byte(raw), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.applyRules(&requestRules{path: optDefault}); err != nil {
		t.Fatal(err)
	}
	x := &exchange{req: &r, clientIP: "127.0.0.1", scheme: "http", reqID: []byte("id")}
	if string(x.URI()) != "/api/x?q" {
		t.Fatalf("URI() = %q, want /api/x?q", x.URI())
	}
	rt, be := &Route{Path: "/"}, &upstream.Backend{Addr: "b:1"}
	head := string(appendRequestHead(nil, x, rt, be))
	if !strings.HasPrefix(head, "GET /api/x?q HTTP/1.1\r\n") || !strings.Contains(head, "\r\nHost: secure.example\r\n") || strings.Contains(head, "other.example\r\n") {
		t.Fatalf("forwarded head:\n%s", head)
	}
	x.SetURI("/rewritten/%2e?z")
	head = string(appendRequestHead(nil, x, rt, be))
	if !strings.HasPrefix(head, "GET /rewritten/%2e?z HTTP/1.1\r\n") {
		t.Fatalf("after a plugin's rewrite:\n%s", head)
	}
}

// BenchmarkNormalizePath: a path already in normal form (the common case,
// checked without a copy) and one that is rebuilt in the scratch buffer.
func BenchmarkNormalizePath(b *testing.B) {
	for _, p := range []string{"/api/v1/users/42/orders", "//api/v1/%75sers/42/orders%2d1"} {
		b.Run(p, func(b *testing.B) {
			in, scratch := []byte(p), make([]byte, 0, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := normalizePath(scratch, in, optDefault); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
