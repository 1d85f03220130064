package e2e_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// seen is what an echo backend recorded of one request.
type seen struct {
	Method     string
	RequestURI string
	Host       string
	Proto      string
	Header     http.Header
}

// recorder is a backend that records the requests it gets.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (rec *recorder) record(r *http.Request) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs = append(rec.reqs, seen{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Proto: r.Proto, Header: r.Header.Clone()})
}

func (rec *recorder) last(t *testing.T) seen {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		t.Fatal("the backend got no request")
	}
	return rec.reqs[len(rec.reqs)-1]
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

// TestBasicRouting: a routed GET, the banner on "/" and the JSON 404.
func TestBasicRouting(t *testing.T) {
	const backendBody = "hello from the backend: 0123456789abcdef\n"
	forEachEngine(t, func(t *testing.T, engine string) {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, backendBody)
		})
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL)))
		c := newClient(t)

		t.Run("routed", func(t *testing.T) {
			resp, body := get(t, c, g.URL()+"/api/test")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if string(body) != backendBody {
				t.Errorf("body %q, want %q", body, backendBody)
			}
		})
		t.Run("banner", func(t *testing.T) {
			resp, body := get(t, c, g.URL()+"/")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if string(body) != "RustyGate is running\n" {
				t.Errorf("body %q, want the banner", body)
			}
		})
		t.Run("no route", func(t *testing.T) {
			for _, path := range []string{"/nope", "/api/testing", "/api"} {
				resp, body := get(t, c, g.URL()+path)
				eb := checkErrorResponse(t, resp, body, 404)
				if eb.Error != "no route" {
					t.Errorf("%s: error %q, want \"no route\"", path, eb.Error)
				}
			}
		})
	})
}

// echoHandler records the request and answers with a status, repeated
// headers and a body naming the method and URI.
func echoHandler(rec *recorder) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Add("Set-Cookie", "a=1; Path=/")
		h.Add("Set-Cookie", "b=2; HttpOnly")
		h.Add("X-Resp-Multi", "first")
		h.Add("X-Resp-Multi", "second")
		h.Set("X-Resp-Custom", `v1, "quoted" ; x=y`)
		h.Set("X-Echo-Method", r.Method)
		h.Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s", r.Method, r.RequestURI)
	}
}

// TestRequestResponseIntegrity: method, path, query and headers reach the
// backend intact; status, headers and body come back intact.
func TestRequestResponseIntegrity(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		rec := &recorder{}
		be := newBackend(t, echoHandler(rec))
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL)))
		c := newClient(t)

		uris := []string{
			"/api/test",
			"/api/test?x=1",
			"/api/test/a/b/c?x=1&y=two%20words&x=3&empty=&flag",
			"/api/test/a%3Fb/c%20d%C3%A9?q=%41%42+plus&utf=%E2%9C%93",
			"/api/test/~user/semi;colon/x,y?a[]=1&a[]=2",
		}
		methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PURGE"}
		for _, m := range methods {
			for _, uri := range uris {
				t.Run(m+" "+uri, func(t *testing.T) {
					var body io.Reader
					if m == "POST" || m == "PUT" || m == "PATCH" {
						body = strings.NewReader("payload")
					}
					req, err := http.NewRequest(m, g.URL()+uri, body)
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("X-Custom", "hello world")
					req.Header.Add("X-Repeated", "one")
					req.Header.Add("X-Repeated", "two")
					req.Header.Add("X-Repeated", "three, four")
					req.Header.Set("X-Odd-Value", `a,b;c=d "q" \ / {}`)
					req.Header.Set("Authorization", "Bearer s3cr3t")
					req.Header.Set("Cookie", "sid=abc; theme=dark")
					req.Header.Set("User-Agent", "e2e-test/1.0")
					resp, respBody := do(t, c, req)

					got := rec.last(t)
					if got.Method != m {
						t.Errorf("backend method %q, want %q", got.Method, m)
					}
					if got.RequestURI != uri {
						t.Errorf("backend URI %q, want %q", got.RequestURI, uri)
					}
					for name, want := range map[string][]string{
						"X-Custom":      {"hello world"},
						"X-Repeated":    {"one", "two", "three, four"},
						"X-Odd-Value":   {`a,b;c=d "q" \ / {}`},
						"Authorization": {"Bearer s3cr3t"},
						"Cookie":        {"sid=abc; theme=dark"},
						"User-Agent":    {"e2e-test/1.0"},
					} {
						if v := got.Header.Values(name); !slices.Equal(v, want) {
							t.Errorf("backend %s = %q, want %q", name, v, want)
						}
					}

					if resp.StatusCode != http.StatusCreated {
						t.Errorf("status %d, want 201", resp.StatusCode)
					}
					if v := resp.Header.Values("Set-Cookie"); !slices.Equal(v, []string{"a=1; Path=/", "b=2; HttpOnly"}) {
						t.Errorf("Set-Cookie %q", v)
					}
					if v := resp.Header.Values("X-Resp-Multi"); !slices.Equal(v, []string{"first", "second"}) {
						t.Errorf("X-Resp-Multi %q", v)
					}
					if v := resp.Header.Get("X-Resp-Custom"); v != `v1, "quoted" ; x=y` {
						t.Errorf("X-Resp-Custom %q", v)
					}
					if v := resp.Header.Get("X-Echo-Method"); v != m {
						t.Errorf("X-Echo-Method %q, want %q", v, m)
					}
					if v := resp.Header.Get("Content-Type"); v != "text/plain" {
						t.Errorf("Content-Type %q", v)
					}
					want := m + " " + uri
					if m == "HEAD" {
						want = ""
					}
					if string(respBody) != want {
						t.Errorf("body %q, want %q", respBody, want)
					}
				})
			}
		}
	})
}

// TestHopByHopHeaders: connection-specific headers are removed both ways.
func TestHopByHopHeaders(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		heads := make(chan textproto.MIMEHeader, 4)
		be := newRawBackend(t, func(c net.Conn) {
			br := bufio.NewReader(c)
			_, hdr, err := readHead(br)
			if err != nil {
				return
			}
			heads <- hdr
			io.WriteString(c, "HTTP/1.1 200 OK\r\n"+
				"Connection: X-Resp-Hop\r\n"+
				"X-Resp-Hop: 1\r\n"+
				"Keep-Alive: x\r\n"+
				"Proxy-Connection: keep-alive\r\n"+
				"X-End-To-End: kept\r\n"+
				"Content-Length: 2\r\n\r\nok")
			// Keep the connection until the gateway closes or reuses it.
			io.Copy(io.Discard, br)
		})
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL())))

		c := dialRaw(t, g.addr, 5*time.Second)
		io.WriteString(c, "GET /api/test HTTP/1.1\r\n"+
			"Host: hop.example\r\n"+
			"Connection: keep-alive, X-Custom-Hop\r\n"+
			"X-Custom-Hop: 1\r\n"+
			"Keep-Alive: timeout=5\r\n"+
			"TE: trailers\r\n"+
			"Proxy-Connection: x\r\n"+
			"X-End-To-End: yes\r\n"+
			"\r\n")
		br := bufio.NewReader(c)
		status, hdr, err := readHead(br)
		if err != nil {
			t.Fatalf("reading response head: %v", err)
		}
		if !strings.HasPrefix(status, "HTTP/1.1 200") {
			t.Fatalf("status line %q", status)
		}
		body := make([]byte, 2)
		if _, err := io.ReadFull(br, body); err != nil || string(body) != "ok" {
			t.Errorf("body %q, %v", body, err)
		}

		var reqHdr textproto.MIMEHeader
		select {
		case reqHdr = <-heads:
		case <-time.After(3 * time.Second):
			t.Fatal("the backend got no request")
		}
		for _, name := range []string{"X-Custom-Hop", "Keep-Alive", "Te", "Proxy-Connection"} {
			if v, ok := reqHdr[name]; ok {
				t.Errorf("backend got hop-by-hop request header %s: %q", name, v)
			}
		}
		for _, v := range reqHdr.Values("Connection") {
			if strings.Contains(strings.ToLower(v), "x-custom-hop") || strings.Contains(strings.ToLower(v), "keep-alive") {
				t.Errorf("backend got the client's Connection header %q", v)
			}
		}
		if v := reqHdr.Get("X-End-To-End"); v != "yes" {
			t.Errorf("backend X-End-To-End %q, want yes", v)
		}

		for _, name := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Connection"} {
			if v, ok := hdr[name]; ok {
				t.Errorf("client got hop-by-hop response header %s: %q", name, v)
			}
		}
		for _, v := range hdr.Values("Connection") {
			if strings.Contains(strings.ToLower(v), "x-resp-hop") {
				t.Errorf("client got the backend's Connection header %q", v)
			}
		}
		if v := hdr.Get("X-End-To-End"); v != "kept" {
			t.Errorf("client X-End-To-End %q, want kept", v)
		}
	})
}

// TestForwardingHeaders: X-Forwarded-*, Via and Host.
func TestForwardingHeaders(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		rec := &recorder{}
		be := newBackend(t, echoHandler(rec))
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL)))
		c := newClient(t)

		send := func(t *testing.T, host string, hdr http.Header) seen {
			t.Helper()
			req, err := http.NewRequest("GET", g.URL()+"/api/test/fwd", nil)
			if err != nil {
				t.Fatal(err)
			}
			if host != "" {
				req.Host = host
			}
			for k, vs := range hdr {
				req.Header[k] = vs
			}
			resp, _ := do(t, c, req)
			if resp.StatusCode != 201 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			return rec.last(t)
		}
		checkCommon := func(t *testing.T, got seen, host string) {
			t.Helper()
			if got.Host != host {
				t.Errorf("backend Host %q, want %q (as the client sent it)", got.Host, host)
			}
			if v := got.Header.Values("X-Forwarded-Proto"); !slices.Equal(v, []string{"http"}) {
				t.Errorf("X-Forwarded-Proto %q, want [http]", v)
			}
			if v := got.Header.Values("X-Forwarded-Host"); !slices.Equal(v, []string{host}) {
				t.Errorf("X-Forwarded-Host %q, want [%s]", v, host)
			}
			via := strings.Join(got.Header.Values("Via"), ", ")
			if !strings.Contains(via, "rustygate") {
				t.Errorf("Via %q does not name rustygate", via)
			}
		}

		t.Run("no prior XFF", func(t *testing.T) {
			got := send(t, "", nil)
			if v := got.Header.Values("X-Forwarded-For"); !slices.Equal(v, []string{"127.0.0.1"}) {
				t.Errorf("X-Forwarded-For %q, want [127.0.0.1]", v)
			}
			checkCommon(t, got, g.addr)
		})
		t.Run("XFF appended", func(t *testing.T) {
			got := send(t, "public.example:8443", http.Header{
				"X-Forwarded-For":   {"203.0.113.7"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"spoofed.example"},
			})
			if v := got.Header.Values("X-Forwarded-For"); !slices.Equal(v, []string{"203.0.113.7, 127.0.0.1"}) {
				t.Errorf("X-Forwarded-For %q, want [203.0.113.7, 127.0.0.1]", v)
			}
			checkCommon(t, got, "public.example:8443")
		})
		t.Run("XFF list and repeated", func(t *testing.T) {
			got := send(t, "Mixed.Case.Example", http.Header{
				"X-Forwarded-For": {"198.51.100.1, 198.51.100.2", "192.0.2.9"},
			})
			xff := strings.Join(got.Header.Values("X-Forwarded-For"), ", ")
			if xff != "198.51.100.1, 198.51.100.2, 192.0.2.9, 127.0.0.1" {
				t.Errorf("X-Forwarded-For %q, want the client's values then 127.0.0.1", xff)
			}
			checkCommon(t, got, "Mixed.Case.Example")
		})
		t.Run("Via appended", func(t *testing.T) {
			got := send(t, "", http.Header{"Via": {"1.1 upstream-cdn"}})
			via := strings.Join(got.Header.Values("Via"), ", ")
			if !strings.HasPrefix(via, "1.1 upstream-cdn") || !strings.Contains(via, "rustygate") {
				t.Errorf("Via %q, want the client's Via followed by rustygate", via)
			}
		})
	})
}

// TestRequestID: a client id is kept; otherwise one is generated, sent
// to the backend, echoed and logged.
func TestRequestID(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		rec := &recorder{}
		be := newBackend(t, echoHandler(rec))
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL)))
		c := newClient(t)

		t.Run("client supplied", func(t *testing.T) {
			const id = "client-id-0123_ABC.xyz"
			req, _ := http.NewRequest("GET", g.URL()+"/api/test", nil)
			req.Header.Set("X-Request-Id", id)
			resp, _ := do(t, c, req)
			if v := rec.last(t).Header.Values("X-Request-Id"); !slices.Equal(v, []string{id}) {
				t.Errorf("backend X-Request-Id %q, want [%s]", v, id)
			}
			if v := resp.Header.Values("X-Request-Id"); !slices.Equal(v, []string{id}) {
				t.Errorf("response X-Request-Id %q, want [%s]", v, id)
			}
			if l := g.accessLine(t, id); l["status"] != float64(201) {
				t.Errorf("access line status %v", l["status"])
			}
		})
		t.Run("generated", func(t *testing.T) {
			ids := map[string]bool{}
			for range 3 {
				resp, _ := get(t, c, g.URL()+"/api/test")
				id := resp.Header.Get("X-Request-Id")
				if !hexID.MatchString(id) {
					t.Fatalf("response X-Request-Id %q is not 32 hex digits", id)
				}
				if ids[id] {
					t.Errorf("request id %q generated twice", id)
				}
				ids[id] = true
				if v := rec.last(t).Header.Values("X-Request-Id"); !slices.Equal(v, []string{id}) {
					t.Errorf("backend X-Request-Id %q, want [%s]", v, id)
				}
				g.accessLine(t, id)
			}
		})
		t.Run("unsafe client id replaced", func(t *testing.T) {
			for _, bad := range []string{`has space`, `quote"d`, strings.Repeat("x", 200)} {
				req, _ := http.NewRequest("GET", g.URL()+"/api/test", nil)
				req.Header.Set("X-Request-Id", bad)
				resp, _ := do(t, c, req)
				id := resp.Header.Get("X-Request-Id")
				if !hexID.MatchString(id) {
					t.Errorf("client id %q: response X-Request-Id %q, want a generated id", bad, id)
					continue
				}
				if v := rec.last(t).Header.Values("X-Request-Id"); !slices.Equal(v, []string{id}) {
					t.Errorf("client id %q: backend X-Request-Id %q, want [%s]", bad, v, id)
				}
			}
		})
		t.Run("backend id not echoed", func(t *testing.T) {
			// The proxy's id wins over one the backend sets.
			be2 := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Request-Id", "from-backend")
			})
			g2 := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be2.URL)))
			resp, _ := get(t, c, g2.URL()+"/api/test")
			if v := resp.Header.Values("X-Request-Id"); len(v) != 1 || !hexID.MatchString(v[0]) {
				t.Errorf("response X-Request-Id %q, want one generated id", v)
			}
		})
	})
}

// TestBackendErrors: an unreachable backend gives 502, a slow one 504.
func TestBackendErrors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
				io.WriteString(w, "too late")
			case <-r.Context().Done():
			}
		})
		routes := fmt.Sprintf(`  - path: "/down"
    backend: "http://%s"
    timeouts: { connect: 1s }
  - path: "/slow"
    backend: %q
    timeouts: { connect: 1s, response_header: 300ms }
`, closedAddr(t), slow.URL)
		g := startGateway(t, engine, gatewayConfig(engine, routes))
		c := newClient(t)

		t.Run("502", func(t *testing.T) {
			resp, body := get(t, c, g.URL()+"/down/x")
			eb := checkErrorResponse(t, resp, body, 502)
			l := g.accessLine(t, eb.RequestID)
			if l["status"] != float64(502) || l["error"] == nil || l["error"] == "" {
				t.Errorf("access line %v, want status 502 and an error", l)
			}
		})
		t.Run("504", func(t *testing.T) {
			start := time.Now()
			resp, body := get(t, c, g.URL()+"/slow")
			elapsed := time.Since(start)
			eb := checkErrorResponse(t, resp, body, 504)
			if elapsed > time.Second {
				t.Errorf("504 after %v, want within ~1s (response_header 300ms)", elapsed)
			}
			if elapsed < 250*time.Millisecond {
				t.Errorf("504 after only %v, before the 300ms response_header timeout", elapsed)
			}
			l := g.accessLine(t, eb.RequestID)
			if l["status"] != float64(504) || l["error"] == nil || l["error"] == "" {
				t.Errorf("access line %v, want status 504 and an error", l)
			}
		})
		t.Run("still serving", func(t *testing.T) {
			resp, body := get(t, c, g.URL()+"/down")
			checkErrorResponse(t, resp, body, 502)
		})
	})
}

// TestResponseHeaderCountsFromRequestEnd: response_header is the wait for
// the response head once the request is sent: a body that takes longer
// than it to stream (the client sends it slowly) is not cut with a 504,
// and a backend that then stays silent gets its 504 about response_header
// after the body's end.
func TestResponseHeaderCountsFromRequestEnd(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			if r.URL.Path == "/silent" {
				<-r.Context().Done()
				return
			}
			fmt.Fprintf(w, "%d", n)
		})
		routes := fmt.Sprintf(`  - path: "/"
    backend: %q
    timeouts: { connect: 1s, response_header: 700ms }
`, be.URL)
		g := startGateway(t, engine, gatewayConfig(engine, routes))
		c := newClient(t)
		slowPost := func(path string) (*http.Response, []byte) {
			pr, pw := io.Pipe()
			go func() {
				for range 5 {
					time.Sleep(400 * time.Millisecond)
					io.WriteString(pw, strings.Repeat("a", 1000))
				}
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", g.URL()+path, pr)
			resp, body := do(t, c, req)
			return resp, body
		}
		start := time.Now()
		resp, body := slowPost("/upload")
		if resp.StatusCode != 200 || string(body) != "5000" {
			t.Errorf("slow 2 s upload with response_header 700ms: %d %s after %v, want 200 5000", resp.StatusCode, body, time.Since(start))
		}
		start = time.Now()
		resp, body = slowPost("/silent")
		elapsed := time.Since(start)
		checkErrorResponse(t, resp, body, 504)
		if elapsed < 2500*time.Millisecond || elapsed > 4500*time.Millisecond {
			t.Errorf("silent backend: 504 after %v, want about 2 s of body + 700ms", elapsed)
		}
	})
}

// TestResponseHeadBeforeBody: a backend that sends its response head and
// only later its body (a stream that starts later) has its head reach
// the client at once.
func TestResponseHeadBeforeBody(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(1500 * time.Millisecond):
				io.WriteString(w, "data: late\n\n")
			case <-r.Context().Done():
			}
		})
		g := startGateway(t, engine, gatewayConfig(engine, fmt.Sprintf("  - path: \"/\"\n    backend: %q\n", be.URL)))
		start := time.Now()
		resp, err := newClient(t).Get(g.URL() + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if head := time.Since(start); head > time.Second {
			t.Errorf("response head after %v, want it before the body (sent 1.5 s later)", head)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "data: late\n\n" {
			t.Errorf("body %q", b)
		}
	})
}

// TestStripPrefixHostMethods: strip_prefix with a base path, host and
// method matching.
func TestStripPrefixHostMethods(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		rec := &recorder{}
		be := newBackend(t, echoHandler(rec))
		other := &recorder{}
		be2 := newBackend(t, echoHandler(other))
		routes := fmt.Sprintf(`  - path: "/strip"
    strip_prefix: true
    backends: [ { url: "%s/base" } ]
    host: "example.com"
    methods: [GET, POST]
    timeouts: { connect: 1s, response_header: 2s }
  - path: "/api/test"
    backend: %q
`, be.URL, be2.URL)
		g := startGateway(t, engine, gatewayConfig(engine, routes))
		c := newClient(t)

		send := func(t *testing.T, method, host, uri string) (*http.Response, []byte) {
			t.Helper()
			req, err := http.NewRequest(method, g.URL()+uri, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			return do(t, c, req)
		}

		for _, tc := range []struct{ method, host, uri, want string }{
			{"GET", "example.com", "/strip/a/b?q=1", "/base/a/b?q=1"},
			{"POST", "example.com", "/strip/a/b?q=1", "/base/a/b?q=1"},
			{"GET", "EXAMPLE.com:8080", "/strip/x%20y/z?a=b&c", "/base/x%20y/z?a=b&c"},
			{"GET", "example.com", "/strip/", "/base/"},
		} {
			t.Run(tc.method+" "+tc.host+" "+tc.uri, func(t *testing.T) {
				n := rec.count()
				resp, _ := send(t, tc.method, tc.host, tc.uri)
				if resp.StatusCode != 201 {
					t.Fatalf("status %d, want 201", resp.StatusCode)
				}
				if rec.count() != n+1 {
					t.Fatalf("the /strip backend was not called")
				}
				got := rec.last(t)
				if got.RequestURI != tc.want {
					t.Errorf("backend URI %q, want %q", got.RequestURI, tc.want)
				}
				if got.Method != tc.method {
					t.Errorf("backend method %q, want %q", got.Method, tc.method)
				}
				if got.Host != tc.host {
					t.Errorf("backend Host %q, want %q", got.Host, tc.host)
				}
			})
		}
		t.Run("wrong host", func(t *testing.T) {
			n := rec.count()
			resp, body := send(t, "GET", "other.com", "/strip/a/b?q=1")
			checkErrorResponse(t, resp, body, 404)
			if rec.count() != n {
				t.Errorf("the backend was called for the wrong host")
			}
		})
		t.Run("prefix boundary", func(t *testing.T) {
			resp, body := send(t, "GET", "example.com", "/stripped")
			checkErrorResponse(t, resp, body, 404)
		})
		t.Run("wrong method", func(t *testing.T) {
			n := rec.count()
			resp, body := send(t, "DELETE", "example.com", "/strip/a/b?q=1")
			checkErrorResponse(t, resp, body, 405)
			allow := strings.Split(resp.Header.Get("Allow"), ",")
			for i := range allow {
				allow[i] = strings.TrimSpace(allow[i])
			}
			if !slices.Contains(allow, "GET") || !slices.Contains(allow, "POST") {
				t.Errorf("Allow %q, want GET and POST", resp.Header.Get("Allow"))
			}
			if slices.Contains(allow, "DELETE") {
				t.Errorf("Allow %q lists DELETE", resp.Header.Get("Allow"))
			}
			if rec.count() != n {
				t.Errorf("the backend was called for a wrong method")
			}
		})
		t.Run("other route unaffected", func(t *testing.T) {
			resp, _ := send(t, "DELETE", "other.com", "/api/test/x")
			if resp.StatusCode != 201 || other.last(t).RequestURI != "/api/test/x" {
				t.Errorf("status %d, URI %q", resp.StatusCode, other.last(t).RequestURI)
			}
		})
	})
}

// TestAccessLog: the JSON access line of a request carries its details.
func TestAccessLog(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		rec := &recorder{}
		be := newBackend(t, echoHandler(rec))
		g := startGateway(t, engine, gatewayConfig(engine, simpleRoutes(be.URL)))
		c := newClient(t)

		const id = "access-log-test-1"
		req, _ := http.NewRequest("POST", g.URL()+"/api/test/log?x=1", strings.NewReader("12345"))
		req.Header.Set("X-Request-Id", id)
		req.Header.Set("User-Agent", "e2e-access/2")
		resp, body := do(t, c, req)
		if resp.StatusCode != 201 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		l := g.accessLine(t, id)
		raw, _ := json.Marshal(l)
		t.Logf("access line: %s", raw)

		wantStr := map[string]string{
			"level":      "INFO",
			"method":     "POST",
			"path":       "/api/test/log?x=1",
			"proto":      "HTTP/1.1",
			"route":      "/api/test",
			"request_id": id,
			"client_ip":  "127.0.0.1",
			"user_agent": "e2e-access/2",
			"host":       g.addr,
		}
		for k, want := range wantStr {
			if v, ok := l[k].(string); !ok || v != want {
				t.Errorf("%s = %#v, want %q", k, l[k], want)
			}
		}
		if v, ok := l["backend"].(string); !ok || !strings.Contains(v, strings.TrimPrefix(be.URL, "http://")) {
			t.Errorf("backend = %#v, want the backend URL %s", l["backend"], be.URL)
		}
		if v, ok := l["status"].(float64); !ok || v != 201 {
			t.Errorf("status = %#v, want 201", l["status"])
		}
		if v, ok := l["latency_ms"].(float64); !ok || v < 0 || v > 10000 {
			t.Errorf("latency_ms = %#v, want a small non-negative number", l["latency_ms"])
		}
		if v, ok := l["bytes_in"].(float64); !ok || v != 5 {
			t.Errorf("bytes_in = %#v, want 5", l["bytes_in"])
		}
		if v, ok := l["bytes_out"].(float64); !ok || int(v) != len(body) {
			t.Errorf("bytes_out = %#v, want %d", l["bytes_out"], len(body))
		}
		if ts, ok := l["time"].(string); !ok {
			t.Errorf("time = %#v", l["time"])
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("time %q: %v", ts, err)
		}
		if _, ok := l["error"]; ok {
			t.Errorf("error = %#v on a proxied 201", l["error"])
		}

		// A status the proxy made itself names the error and no route.
		resp404, body404 := get(t, c, g.URL()+"/missing")
		eb := checkErrorResponse(t, resp404, body404, 404)
		l = g.accessLine(t, eb.RequestID)
		if l["status"] != float64(404) || l["error"] != "no route" || l["path"] != "/missing" || l["method"] != "GET" {
			t.Errorf("404 access line %v", l)
		}
		if v, ok := l["latency_ms"].(float64); !ok || v < 0 {
			t.Errorf("404 latency_ms = %#v", l["latency_ms"])
		}
	})
}
