package e2e_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/rustygate/rustygate/internal/testnet"
)

// The path-normalization differential test: a JWT-guarded /admin-api
// route and an open / route in front of real backends that decode paths
// themselves, Go's net/http ServeMux and nginx. However the path is
// spelled, a request without a token must never reach the backend's
// protected handler: the gateway answers 401 or 400, or the request
// reaches the open handler.

// pnProtected is the status of the backends' protected handlers.
const pnProtected = 299

// pnVariant is one spelling of a path aimed at /admin-api.
type pnVariant struct {
	target string
	// reach: with a token, the request must reach the protected handler
	// (it is /admin-api once normalized); slashy: only when encoded
	// slashes are decoded.
	reach, slashy bool
}

// pnIssueVariants are the spellings of the original report, and the
// plain paths.
var pnIssueVariants = []pnVariant{
	{"/admin-api", true, false},
	{"/admin-api/x", true, false},
	{"/%61dmin-api", true, false},
	{"/admin%2dapi", true, false},
	{"/%61dmin-api/x", true, false},
	{"/admin-api%2f", false, true},
	{"/admin-api%2fx", false, true},
	{"//admin-api", true, false},
	{"//admin-api/x", true, false},
	{"/%2fadmin-api", false, true},
	{"/%2e/admin-api", false, false},
	{"/x/../admin-api", false, false},
	{"/admin-api%5c", false, true},
	{"/%5cadmin-api", false, true},
	{"/\\admin-api", false, false},
	{"/ADMIN-API", false, false},
}

// pnGeneratedVariants encodes each character, in both cases of hex
// digits, doubles slashes, and puts %2F and %5C at every slash.
func pnGeneratedVariants() []pnVariant {
	var out []pnVariant
	for _, base := range []string{"/admin-api", "/admin-api/x"} {
		for i := 1; i < len(base); i++ {
			if base[i] == '/' {
				for _, esc := range []string{"%2f", "%2F", "%5c", "%5C"} {
					out = append(out, pnVariant{base[:i] + esc + base[i+1:], false, true})
				}
				out = append(out, pnVariant{base[:i] + "/" + base[i:], true, false})
				continue
			}
			lower := fmt.Sprintf("%%%02x", base[i])
			upper := strings.ToUpper(lower)
			out = append(out,
				pnVariant{base[:i] + lower + base[i+1:], true, false},
				pnVariant{base[:i] + upper + base[i+1:], true, false})
		}
		var all strings.Builder
		all.WriteByte('/')
		for i := 1; i < len(base); i++ {
			if base[i] == '/' {
				all.WriteByte('/')
			} else {
				fmt.Fprintf(&all, "%%%02x", base[i])
			}
		}
		out = append(out,
			pnVariant{all.String(), true, false},
			pnVariant{strings.ToUpper(all.String()), true, false},
			pnVariant{"///" + base[1:], true, false},
			pnVariant{base + "//", true, false},
			pnVariant{"/%2f" + base[1:], false, true},
			pnVariant{"/%2F" + base, false, true},
			pnVariant{"/%5C" + base, false, true},
			pnVariant{base + "%2F", false, true},
			pnVariant{base + "?%2f", true, false},
			pnVariant{"/%2561" + base[2:], false, false},
			pnVariant{base + "%C0%AF", false, false},
			pnVariant{base + "%20", false, false},
			pnVariant{base + ";x", false, false},
			pnVariant{base + "/.", false, false},
			pnVariant{base + "/%2e%2E", false, false},
			pnVariant{"/x/%2e%2e" + base, false, false},
			pnVariant{base + "%", false, false},
			pnVariant{base + "%zz", false, false},
			pnVariant{"/%41" + base[2:], false, false},
		)
	}
	return out
}

// pnGoBackend is a net/http ServeMux with a protected /admin-api
// subtree; it counts the requests that reached it.
func pnGoBackend(t *testing.T) (string, *atomic.Int64) {
	hits := &atomic.Int64{}
	mux := http.NewServeMux()
	protected := func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(pnProtected)
		io.WriteString(w, "protected go "+r.URL.Path)
	}
	mux.HandleFunc("/admin-api", protected)
	mux.HandleFunc("/admin-api/", protected)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "open go") })
	return newBackend(t, mux.ServeHTTP).URL, hits
}

// pnNginxConf protects /admin-api and what is under it, as the gateway's
// route does (a bare "location /admin-api" would also take
// "/admin-apix", which the gateway's route does not cover).
const pnNginxConf = `daemon off;
worker_processes 1;
pid nginx.pid;
events { worker_connections 256; }
http {
    log_format pn '$status $request_uri';
    access_log access.log pn;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {
        listen 127.0.0.1:%d;
        default_type text/plain;
        location = /admin-api { return 299 "protected nginx $uri"; }
        location /admin-api/ { return 299 "protected nginx $uri"; }
        location / { return 200 "open nginx"; }
    }
}
`

// nginxBackend is a real nginx started by the test.
type nginxBackend struct {
	url    string
	prefix string
}

// startNginx runs nginx (/usr/sbin/nginx) on a free loopback port in a
// prefix of its own, stopped at cleanup.
func startNginx(t *testing.T) *nginxBackend {
	t.Helper()
	return startNginxConf(t, pnNginxConf)
}

// startNginxConf is startNginx with the configuration conf, whose one %d
// is the port.
func startNginxConf(t *testing.T, conf string) *nginxBackend {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	prefix := t.TempDir()
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	port := testnet.FreePortRange(t, "127.0.0.1", 1)
	confFile := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confFile, fmt.Appendf(nil, conf, port), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", prefix+"/", "-c", confFile, "-e", filepath.Join(prefix, "error.log"))
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("nginx: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return &nginxBackend{url: "http://" + addr, prefix: prefix}
		}
		select {
		case <-exited:
			errLog, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Fatalf("nginx exited: %s%s", out.String(), errLog)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s within 10s", addr)
		}
	}
}

// protectedHits counts the requests nginx answered from its protected
// locations (its access log is written as each request ends).
func (n *nginxBackend) protectedHits(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.prefix, "access.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	hits := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, strconv.Itoa(pnProtected)+" ") {
			hits++
		}
	}
	return hits
}

// pnConfig is a gateway with, per backend host, a JWT-guarded
// /admin-api route and an open / route.
func pnConfig(engine, pathSettings, goURL, nginxURL string) string {
	return fmt.Sprintf(`server:
  listen: %s
  %s
%sadmin:
  listen: "off"
log:
  format: json
  level: info
  access: true
middlewares:
  - { name: jwt, enabled: false, secret: "${JWT_SECRET}", audience: [%s], issuer: %q }
routes:
  - { name: go-admin, host: go.test, path: /admin-api, backend: %[6]q, middlewares: [ { name: jwt, enabled: true } ] }
  - { name: go-open, host: go.test, path: /, backend: %[6]q }
  - { name: nginx-admin, host: nginx.test, path: /admin-api, backend: %[7]q, middlewares: [ { name: jwt, enabled: true } ] }
  - { name: nginx-open, host: nginx.test, path: /, backend: %[7]q }
`, anyPort, engineYAML(engine), pathSettings, polAudience, polIssuer, goURL, nginxURL)
}

// pnResult is what one request got: a status and body, or a refusal by
// the HTTP/2 server (a stream error) before any status.
type pnResult struct {
	status int
	body   string
	err    error
}

// pnGetH1 sends target on a connection of its own.
func pnGetH1(t *testing.T, addr, host, target, token string) pnResult {
	t.Helper()
	return pnGetH1Header(t, addr, host, target, token, "")
}

// pnGetH1Header is pnGetH1 with extra header lines (CRLF-terminated).
func pnGetH1Header(t *testing.T, addr, host, target, token, extra string) pnResult {
	t.Helper()
	c := dialRaw(t, addr, 5*time.Second)
	defer c.Close()
	req := "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n" + extra
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %q: %v", host, target, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return pnResult{status: resp.StatusCode, body: string(body)}
}

// pnH2Client speaks HTTP/2 with prior knowledge over cleartext.
func pnH2Client(t *testing.T) *http.Client {
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

// pnGetH2 sends target as ":path", byte for byte.
func pnGetH2(t *testing.T, c *http.Client, addr, host, target, token string) pnResult {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	path, query, _ := strings.Cut(target, "?")
	if strings.HasPrefix(path, "//") {
		req.URL.Path, _ = url.PathUnescape(path)
		req.URL.RawPath = path
	} else {
		req.URL.Opaque = path
	}
	req.URL.RawQuery = query
	if got := req.URL.RequestURI(); got != target {
		t.Fatalf("the HTTP/2 client would send %q instead of %q", got, target)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		var se http2.StreamError
		if !errors.As(err, &se) {
			t.Fatalf("%s %q: %v", host, target, err)
		}
		return pnResult{err: err}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("%q: answered over %s", target, resp.Proto)
	}
	return pnResult{status: resp.StatusCode, body: string(body)}
}

// TestPathNormalizationDifferential sends every variant, without and with
// a token, over HTTP/1.1 and HTTP/2 on every engine (and with encoded
// slashes decoded), to both backends.
func TestPathNormalizationDifferential(t *testing.T) {
	t.Setenv("JWT_SECRET", polSecret)
	token := polSignHS(t, []byte(polSecret), polClaims("alice"))
	goURL, goHits := pnGoBackend(t)
	ngx := startNginx(t)
	variants := append(append([]pnVariant(nil), pnIssueVariants...), pnGeneratedVariants()...)

	type setup struct {
		name, engine, settings string
		decode                 bool
	}
	var setups []setup
	for _, e := range engines {
		setups = append(setups, setup{e, e, "", false})
	}
	setups = append(setups, setup{"fast-decode", "fast", "  path: { escaped_slashes: decode }\n", true})
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			g := startGateway(t, s.engine, pnConfig(s.engine, s.settings, goURL, ngx.url))
			h2 := pnH2Client(t)
			send := map[string]func(host, target, token string) pnResult{
				"h1": func(host, target, token string) pnResult { return pnGetH1(t, g.addr, host, target, token) },
				"h2": func(host, target, token string) pnResult { return pnGetH2(t, h2, g.addr, host, target, token) },
			}
			goBefore, ngxBefore := goHits.Load(), ngx.protectedHits(t)
			wantGo, wantNgx := int64(0), 0
			for _, proto := range []string{"h1", "h2"} {
				for _, host := range []string{"go.test", "nginx.test"} {
					for _, v := range variants {
						r := send[proto](host, v.target, "")
						pnCheckUnauthenticated(t, proto, host, v.target, r)
						if !v.reach && !(v.slashy && s.decode) {
							continue
						}
						r = send[proto](host, v.target, token)
						if r.status != pnProtected || !strings.HasPrefix(r.body, "protected") {
							t.Errorf("%s %s %q with a token: %d %q %v, want the protected handler", proto, host, v.target, r.status, r.body, r.err)
						}
						if host == "go.test" {
							wantGo++
						} else {
							wantNgx++
						}
					}
				}
			}
			if got := goHits.Load() - goBefore; got != wantGo {
				t.Errorf("Go backend: protected handler ran %d times, want %d (the requests with a token)", got, wantGo)
			}
			pnWaitNginxHits(t, ngx, ngxBefore+wantNgx)
			if s.name == "fast" {
				pnCheckAccessPath(t, g, token)
			}
		})
	}
}

// pnCheckUnauthenticated fails unless a request without a token got 401
// (the gateway's jwt), 400, the open handler, or a refusal by the HTTP/2
// server.
func pnCheckUnauthenticated(t *testing.T, proto, host, target string, r pnResult) {
	t.Helper()
	switch {
	case r.err != nil && proto == "h2":
	case r.status == 401 && strings.Contains(r.body, "invalid_token"),
		r.status == 401 && strings.Contains(r.body, "missing"),
		r.status == 400,
		r.status == 200 && strings.HasPrefix(r.body, "open "):
	default:
		t.Errorf("%s %s %q without a token: %d %q %v; want 401, 400 or the open handler", proto, host, target, r.status, r.body, r.err)
	}
}

// pnWaitNginxHits waits until nginx's access log holds want protected
// answers, and fails if it holds more.
func pnWaitNginxHits(t *testing.T, ngx *nginxBackend, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := ngx.protectedHits(t)
		if got > want {
			t.Fatalf("nginx: protected locations answered %d times, want %d (the requests with a token)", got, want)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx: protected locations answered %d times, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pnCheckAccessPath: the access log shows the path that was routed and
// forwarded.
func pnCheckAccessPath(t *testing.T, g *gateway, token string) {
	t.Helper()
	const id = "pathnorm-access-1"
	r := pnGetH1Header(t, g.addr, "go.test", "/%61dmin-api//x?%61", token, "X-Request-Id: "+id+"\r\n")
	if r.status != pnProtected || r.body != "protected go /admin-api/x" {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	line := g.accessLine(t, id)
	if line["path"] != "/admin-api/x?%61" || line["route"] != "go-admin" {
		t.Errorf("access line path %v route %v, want /admin-api/x?%%61 go-admin", line["path"], line["route"])
	}
}
