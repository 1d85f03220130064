package l7

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/l7/middleware"
)

// tagPolicy changes the request and the response; denyPolicy answers
// requests carrying X-Deny itself.
type tagPolicy struct{}

func (tagPolicy) Handle(r middleware.Request) *middleware.Reply {
	r.SetHeader("X-Tag", "tagged:"+string(r.Method()))
	r.DelHeader("X-Secret")
	r.AddResponseHeader("X-Policy", "seen")
	r.SetValue("k", 42)
	return nil
}

type denyPolicy struct{}

func (denyPolicy) Handle(r middleware.Request) *middleware.Reply {
	if r.Value("k") != 42 {
		return &middleware.Reply{Status: 500, Body: []byte("value lost")}
	}
	if r.Header("x-deny") != nil {
		return &middleware.Reply{Status: 403, Headers: [][2]string{{"X-Why", "denied"}}, Body: []byte(`{"error":"forbidden"}`)}
	}
	if r.Header("x-preflight") != nil {
		return &middleware.Reply{Status: 204, Headers: [][2]string{{"Access-Control-Allow-Origin", "*"}}}
	}
	return nil
}

func TestPolicyChain(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tag=%s secret=%q", r.Header.Get("X-Tag"), r.Header.Get("X-Secret"))
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
			for _, rt := range gw.srv.Snapshot().Routes {
				rt.chain = []middleware.Instance{{Handler: tagPolicy{}}, {Handler: denyPolicy{}}}
			}
			do := func(hdr string) *http.Response {
				req, _ := http.NewRequest("POST", "http://"+gw.addr+"/x", strings.NewReader("body"))
				req.Header.Set("X-Secret", "s")
				if hdr != "" {
					req.Header.Set(hdr, "1")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp
			}
			resp := do("")
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != `tag=tagged:POST secret=""` || resp.Header.Get("X-Policy") != "seen" {
				t.Fatalf("forwarded: %d %q %v", resp.StatusCode, b, resp.Header)
			}
			resp = do("X-Deny")
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 403 || string(b) != `{"error":"forbidden"}` || resp.Header.Get("X-Why") != "denied" ||
				resp.Header.Get("X-Policy") != "seen" || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("denied: %d %q %v", resp.StatusCode, b, resp.Header)
			}
			resp = do("X-Preflight")
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 204 || len(b) != 0 || resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Content-Length") != "" {
				t.Fatalf("204: %d %q %v", resp.StatusCode, b, resp.Header)
			}
		})
	}
}

// TestPolicyHeaderSpellings: a header a policy sets or removes is gone
// from the forwarded request in every spelling of its case and every
// line the client sent it on; the value a policy sets is the only one.
func TestPolicyHeaderSpellings(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tag=%q secret=%q", r.Header.Values("X-Tag"), r.Header.Values("X-Secret"))
	})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf("  - { path: \"/\", backend: %q }\n", be.URL))
			for _, rt := range gw.srv.Snapshot().Routes {
				rt.chain = []middleware.Instance{{Handler: tagPolicy{}}}
			}
			out, _ := rawExchange(t, gw.addr, "GET /x HTTP/1.1\r\nHost: a\r\n"+
				"X-Tag: t1\r\nx-tag: t2\r\nX-TAG: t3\r\n"+
				"X-Secret: s1\r\nx-secret: s2\r\nx-SeCrEt: s3\r\n"+
				"Connection: close\r\n\r\n")
			if want := `tag=["tagged:GET"] secret=[]`; statusOf(out) != 200 || !strings.HasSuffix(out, want) {
				t.Fatalf("forwarded:\n%s\nwant a body %s", out, want)
			}
		})
	}
}

// numbersPolicy adds numeric response headers, more than numBuf holds.
type numbersPolicy struct{ base int64 }

func (p numbersPolicy) Handle(r middleware.Request) *middleware.Reply {
	for i := range int64(5) {
		middleware.AddResponseHeaderInt(r, fmt.Sprintf("X-N%d", i), p.base+i)
	}
	return nil
}

// TestIntResponseHeaders: numbers added with AddResponseHeaderInt reach
// the client intact, request after request on one connection (the
// exchange's digit buffer is reused), also past the buffer's size, on
// every engine; rate_limit's large RateLimit-Remaining values use it.
func TestIntResponseHeaders(t *testing.T) {
	be := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, engine, fmt.Sprintf(`  - path: "/"
    backend: %q
    middlewares: [ { name: rate_limit, limit: 100000000, window: 60, key: ip } ]
`, be.URL))
			c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
			t.Cleanup(c.CloseIdleConnections)
			for i := range 3 {
				resp, err := c.Get("http://" + gw.addr + "/")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				// The bucket refills 1.6M requests a second: full again.
				if got := resp.Header.Get("RateLimit-Remaining"); got != "99999999" {
					t.Fatalf("request %d: RateLimit-Remaining %q, want 99999999", i, got)
				}
				if got := resp.Header.Get("RateLimit-Reset"); got != "0" && got != "1" {
					t.Fatalf("request %d: RateLimit-Reset %q", i, got)
				}
			}
		})
	}
	x := &exchange{}
	for round := range 2 {
		x.reset()
		numbersPolicy{base: 1234567890123456789 - int64(round)}.Handle(x)
		if len(x.addResp) != 5 {
			t.Fatalf("%d headers added, want 5", len(x.addResp))
		}
		for i, h := range x.addResp {
			if want := fmt.Sprint(1234567890123456789 - int64(round) + int64(i)); h.name != fmt.Sprintf("X-N%d", i) || h.value != want {
				t.Errorf("round %d: header %d = %s: %s, want %s", round, i, h.name, h.value, want)
			}
		}
	}
}
