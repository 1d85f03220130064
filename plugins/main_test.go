package plugins

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rustygate/rustygate/l7/middleware"
)

// examples are the guests of plugins/examples, built once for all tests;
// cacheDir is a wazero compilation cache on disk shared by the tests'
// managers, so that each guest is compiled once per run.
var (
	cacheDir    string
	exampleDir  string
	exampleErr  error
	exampleOnce sync.Once
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rustygate-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exampleDir = dir
	cacheDir = filepath.Join(dir, "cache")
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var exampleNames = []string{"add_header", "add_header_v2", "deny", "loop", "trap"}

// example returns the path of a built example guest (GOOS=wasip1
// GOARCH=wasm go build -buildmode=c-shared), building them all on first use.
func example(t testing.TB, name string) string {
	t.Helper()
	exampleOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			exampleErr = err
			return
		}
		for _, n := range exampleNames {
			cmd := exec.Command(goBin, "build", "-buildmode=c-shared",
				"-o", filepath.Join(exampleDir, n+".wasm"), "./examples/"+n)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			if out, err := cmd.CombinedOutput(); err != nil {
				exampleErr = fmt.Errorf("building example %s: %v\n%s", n, err, out)
				return
			}
		}
	})
	if exampleErr != nil {
		t.Fatal(exampleErr)
	}
	return filepath.Join(exampleDir, name+".wasm")
}

// copyExample copies an example guest to dir/as.
func copyExample(t testing.TB, name, dir, as string) string {
	t.Helper()
	data, err := os.ReadFile(example(t, name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, as)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeGuest writes a hand-assembled guest to a temp file.
func writeGuest(t testing.TB, m *wasmModule) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "guest.wasm")
	if err := os.WriteFile(p, m.encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newManager(t testing.TB, opts Options) (*Manager, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if opts.CacheDir == "" {
		opts.CacheDir = cacheDir
	}
	if opts.Timeout == 0 {
		// Above any scheduling hiccup of a loaded machine under -race:
		// only TestLoopIsCutByTheDeadline tests the deadline.
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m, logs
}

func newHandler(t testing.TB, m *Manager, path string, failOpen bool, conf map[string]any) *Handler {
	t.Helper()
	h, err := New(m, Entry{Path: path, FailOpen: failOpen, Config: conf}, "r1", &reporter{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// reporter records Rejected calls.
type reporter struct {
	mu      sync.Mutex
	reasons []string
}

func (r *reporter) Rejected(policy, route, reason string, _ netip.Addr) {
	r.mu.Lock()
	r.reasons = append(r.reasons, policy+"/"+route+"/"+reason)
	r.mu.Unlock()
}

func (r *reporter) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reasons...)
}

// testEx is an Exchange over plain fields, standing for the proxy's request
// and response. AddResponseHeader before the response exists records
// headers that are added to it when it starts (as the proxy does).
type testEx struct {
	// Request provides the methods the tests do not use (they panic).
	middleware.Request
	method, uri, proto string
	peer               netip.AddrPort
	reqH               [][2]string
	vals               []kv
	reqBody            []byte
	bodySet            bool

	added      [][2]string
	responding bool
	status     int
	respH      [][2]string
	respBody   []byte
	isErr      bool

	// offloads counts the Offload calls: each moves the exchange off its
	// event loop, if it is on one.
	offloads int
}

type kv struct {
	k string
	v any
}

func newEx(method, uri string, headers ...string) *testEx {
	e := &testEx{method: method, uri: uri, proto: "HTTP/1.1", peer: netip.MustParseAddrPort("192.0.2.7:40000")}
	for i := 0; i+1 < len(headers); i += 2 {
		e.reqH = append(e.reqH, [2]string{headers[i], headers[i+1]})
	}
	return e
}

func (e *testEx) Method() []byte { return []byte(e.method) }
func (e *testEx) Path() []byte {
	p, _, _ := strings.Cut(e.uri, "?")
	return []byte(p)
}
func (e *testEx) Host() []byte { return e.Header("Host") }
func (e *testEx) Header(name string) []byte {
	for _, h := range e.reqH {
		if strings.EqualFold(h[0], name) {
			return []byte(h[1])
		}
	}
	return nil
}
func (e *testEx) PeerIP() netip.Addr       { return e.peer.Addr() }
func (e *testEx) PeerAddr() netip.AddrPort { return e.peer }
func (e *testEx) SetHeader(name, value string) {
	e.DelHeader(name)
	e.AddHeader(name, value)
}
func (e *testEx) AddHeader(name, value string) { e.reqH = append(e.reqH, [2]string{name, value}) }
func (e *testEx) DelHeader(name string)        { e.reqH = delHeader(e.reqH, name) }
func (e *testEx) AddResponseHeader(name, value string) {
	if e.responding {
		e.respH = append(e.respH, [2]string{name, value})
	} else {
		e.added = append(e.added, [2]string{name, value})
	}
}
func (e *testEx) Route() string { return "r1" }
func (e *testEx) Value(key string) any {
	for _, p := range e.vals {
		if p.k == key {
			return p.v
		}
	}
	return nil
}
func (e *testEx) SetValue(key string, v any) {
	for i := range e.vals {
		if e.vals[i].k == key {
			e.vals[i].v = v
			return
		}
	}
	e.vals = append(e.vals, kv{key, v})
}
func (e *testEx) URI() []byte                   { return []byte(e.uri) }
func (e *testEx) SetURI(uri string)             { e.uri = uri }
func (e *testEx) SetMethod(m string)            { e.method = m }
func (e *testEx) Proto() string                 { return e.proto }
func (e *testEx) RequestBody() ([]byte, error)  { return e.reqBody, nil }
func (e *testEx) SetRequestBody(b []byte)       { e.reqBody, e.bodySet = b, true }
func (e *testEx) ResponseIsError() bool         { return e.isErr }
func (e *testEx) ResponseStatus() int           { return e.status }
func (e *testEx) SetResponseStatus(code int)    { e.status = code }
func (e *testEx) ResponseBody() []byte          { return e.respBody }
func (e *testEx) SetResponseBody(b []byte)      { e.respBody = b }
func (e *testEx) DelResponseHeader(name string) { e.respH = delHeader(e.respH, name) }
func (e *testEx) SetResponseHeader(name, value string) {
	e.respH = append(delHeader(e.respH, name), [2]string{name, value})
}
func (e *testEx) RequestHeaderNames(dst []string) []string  { return names(e.reqH, dst) }
func (e *testEx) ResponseHeaderNames(dst []string) []string { return names(e.respH, dst) }
func (e *testEx) RequestHeaderValues(name string, dst [][]byte) [][]byte {
	return values(e.reqH, name, dst)
}
func (e *testEx) ResponseHeaderValues(name string, dst [][]byte) [][]byte {
	return values(e.respH, name, dst)
}

func delHeader(hs [][2]string, name string) [][2]string {
	kept := hs[:0]
	for _, h := range hs {
		if !strings.EqualFold(h[0], name) {
			kept = append(kept, h)
		}
	}
	return kept
}

func names(hs [][2]string, dst []string) []string {
	for _, h := range hs {
		dst = append(dst, h[0])
	}
	return dst
}

func values(hs [][2]string, name string, dst [][]byte) [][]byte {
	for _, h := range hs {
		if strings.EqualFold(h[0], name) {
			dst = append(dst, []byte(h[1]))
		}
	}
	return dst
}

func (e *testEx) respHeader(name string) string {
	for _, h := range e.respH {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// result is what the client gets.
type result struct {
	status  int
	headers [][2]string
	body    string
	// forwarded reports that the backend was reached.
	forwarded bool
}

func (r result) header(name string) string {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// roundTrip plays the proxy: the policy, then (if forwarded) a backend
// answering 200 "ok", then the response phase.
func roundTrip(h *Handler, e *testEx) result {
	if reply := h.Handle(e); reply != nil {
		return result{status: reply.Status, headers: append(reply.Headers, e.added...), body: string(reply.Body)}
	}
	e.responding = true
	e.status = 200
	e.respH = append([][2]string{{"Content-Type", "text/plain"}}, e.added...)
	e.respBody = []byte("ok")
	if h.ResponseNeeds(e) != NeedNone {
		if err := h.OnResponse(e); err != nil {
			f := FailureReply()
			return result{status: f.Status, headers: f.Headers, body: string(f.Body), forwarded: true}
		}
	}
	return result{status: e.status, headers: e.respH, body: string(e.respBody), forwarded: true}
}

var _ io.Writer = (*syncBuffer)(nil)
var _ middleware.Reporter = (*reporter)(nil)

func (e *testEx) RequestBodyPrefix(limit int) ([]byte, bool, error) {
	if len(e.reqBody) > limit {
		return e.reqBody[:limit], false, nil
	}
	return e.reqBody, true, nil
}

func (e *testEx) RequestID() []byte { return []byte("test-request") }

func (e *testEx) Offload() { e.offloads++ }
