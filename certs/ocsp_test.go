package certs

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ocspResponder is a real OCSP responder on loopback, signing with the
// test CA's key.
type ocspResponder struct {
	ca *testCA
	// status is ocsp.Good or ocsp.Revoked, or -1 to answer 500; hang
	// makes it never answer (until the client gives up).
	status   atomic.Int64
	hang     atomic.Bool
	validity atomic.Int64 // nextUpdate - thisUpdate, nanoseconds
	requests atomic.Int64
	srv      *httptest.Server
}

func newOCSPResponder(t *testing.T, ca *testCA) *ocspResponder {
	r := &ocspResponder{ca: ca}
	r.validity.Store(int64(time.Hour))
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *ocspResponder) serve(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	// Reading the body first lets net/http notice the client leaving.
	body, _ := io.ReadAll(req.Body)
	if r.hang.Load() {
		<-req.Context().Done()
		return
	}
	parsed, err := ocsp.ParseRequest(body)
	if err != nil || req.Header.Get("Content-Type") != "application/ocsp-request" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	status := int(r.status.Load())
	if status < 0 {
		http.Error(w, "responder down", http.StatusInternalServerError)
		return
	}
	now := time.Now().Truncate(time.Second)
	tmpl := ocsp.Response{
		Status:       status,
		SerialNumber: parsed.SerialNumber,
		ThisUpdate:   now.Add(-time.Second),
		NextUpdate:   now.Add(time.Duration(r.validity.Load())),
	}
	if status == ocsp.Revoked {
		tmpl.RevokedAt, tmpl.RevocationReason = now.Add(-time.Minute), ocsp.KeyCompromise
	}
	der, err := ocsp.CreateResponse(r.ca.cert, r.ca.cert, tmpl, r.ca.key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(der)
}

// ocspFixture serves one certificate that names the responder.
type ocspFixture struct {
	ca   *testCA
	resp *ocspResponder
	leaf *issued
	m    *Manager
	addr string
	logs *logBuffer
}

func newOCSPFixture(t *testing.T, status int, opts Options) *ocspFixture {
	f := &ocspFixture{ca: newCA(t, "OCSP CA"), logs: &logBuffer{}}
	f.resp = newOCSPResponder(t, f.ca)
	f.resp.status.Store(int64(status))
	f.leaf = f.ca.issue(t, leafSpec{names: []string{"ocsp.example.com"}, ocsp: f.resp.srv.URL})
	opts.Certificates = []PairFiles{writePair(t, t.TempDir(), "ocsp", f.leaf)}
	opts.OCSPStapling = true
	opts.Logger = f.logs.logger()
	f.m = startManager(t, opts)
	f.addr = serveTLS(t, f.m.TLSConfig(nil))
	return f
}

// stapled handshakes and returns the stapled response, or nil.
func (f *ocspFixture) stapled(t *testing.T) *ocsp.Response {
	t.Helper()
	start := time.Now()
	cs, err := dial(f.addr, clientFor(f.ca, "ocsp.example.com"))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("handshake took %v", d)
	}
	if len(cs.OCSPResponse) == 0 {
		return nil
	}
	r, err := ocsp.ParseResponseForCert(cs.OCSPResponse, cs.PeerCertificates[0], f.ca.cert)
	if err != nil {
		t.Fatalf("stapled response: %v", err)
	}
	return r
}

func TestOCSPStapledAndRefreshed(t *testing.T) {
	f := newOCSPFixture(t, ocsp.Good, Options{ocspMinRefresh: 100 * time.Millisecond})
	var first *ocsp.Response
	if !waitFor(5*time.Second, func() bool { first = f.stapled(t); return first != nil }) {
		t.Fatalf("no OCSP response stapled after 5s; log:\n%s", f.logs.String())
	}
	if first.Status != ocsp.Good || first.SerialNumber.Text(16) != f.leaf.serialHex {
		t.Errorf("stapled status %d serial %s", first.Status, first.SerialNumber.Text(16))
	}
	if !f.m.Certificates()[0].OCSPStapled {
		t.Error("Certificates does not report the staple")
	}
	// A response valid for 2s is refreshed halfway, before it expires.
	f.resp.validity.Store(int64(2 * time.Second))
	f.m.mu.Lock()
	f.m.stopStapler(f.m.pairs[0])
	f.m.startStapler(f.m.pairs[0])
	f.m.mu.Unlock()
	before := f.resp.requests.Load()
	if !waitFor(5*time.Second, func() bool { return f.resp.requests.Load() >= before+2 }) {
		t.Fatalf("a 2s response was not refreshed within 5s (%d requests)", f.resp.requests.Load()-before)
	}
	if r := f.stapled(t); r == nil || !r.NextUpdate.After(time.Now()) {
		t.Errorf("after the refresh the staple is %v, want a current response", r)
	}
}

func TestOCSPFailuresNeverBlockHandshakes(t *testing.T) {
	f := newOCSPFixture(t, -1, Options{ocspRetry: 100 * time.Millisecond, OCSPTimeout: 300 * time.Millisecond})
	f.logs.waitLog(t, "ocsp fetch failed", "500")
	if r := f.stapled(t); r != nil {
		t.Fatal("stapled a response the responder never gave")
	}
	// A responder that never answers: handshakes go on at once.
	f.resp.hang.Store(true)
	f.logs.waitLog(t, "ocsp fetch failed", "Timeout")
	if r := f.stapled(t); r != nil {
		t.Fatal("stapled while the responder hangs")
	}
	// The responder recovers: the retry staples.
	f.resp.hang.Store(false)
	f.resp.status.Store(ocsp.Good)
	if !waitFor(5*time.Second, func() bool { return f.stapled(t) != nil }) {
		t.Fatalf("no staple after the responder recovered; log:\n%s", f.logs.String())
	}
	// Revoked: the good staple is withdrawn.
	f.resp.status.Store(ocsp.Revoked)
	f.m.mu.Lock()
	f.m.stopStapler(f.m.pairs[0])
	f.m.startStapler(f.m.pairs[0])
	f.m.mu.Unlock()
	f.logs.waitLog(t, "certificate revoked")
	if !waitFor(5*time.Second, func() bool { return f.stapled(t) == nil }) {
		t.Error("a revoked certificate keeps its good staple")
	}
}

func TestOCSPSkippedWithoutResponderOrIssuer(t *testing.T) {
	ca := newCA(t, "CA")
	resp := newOCSPResponder(t, ca)
	dir := t.TempDir()
	plain := writePair(t, dir, "plain", ca.issue(t, leafSpec{names: []string{"plain.example.com"}}))
	leafOnly := ca.issue(t, leafSpec{names: []string{"leaf.example.com"}, ocsp: resp.srv.URL})
	leafOnly.chainPEM = leafOnly.chainPEM[:len(leafOnly.chainPEM)-len(ca.pem)]
	lone := writePair(t, dir, "lone", leafOnly)
	var logs logBuffer
	m := startManager(t, Options{Certificates: []PairFiles{plain, lone}, OCSPStapling: true, Logger: logs.logger()})
	logs.waitLog(t, "no issuer certificate", "lone.crt")
	addr := serveTLS(t, m.TLSConfig(nil))
	if cs, err := dial(addr, &tls.Config{RootCAs: ca.pool, ServerName: "plain.example.com"}); err != nil || len(cs.OCSPResponse) != 0 {
		t.Errorf("plain certificate: err %v, staple %d bytes", err, len(cs.OCSPResponse))
	}
	if n := resp.requests.Load(); n != 0 {
		t.Errorf("%d OCSP requests for certificates that cannot be stapled", n)
	}
}

func TestOCSPStapleKeptAcrossUpdate(t *testing.T) {
	f := newOCSPFixture(t, ocsp.Good, Options{})
	if !waitFor(5*time.Second, func() bool { return f.stapled(t) != nil }) {
		t.Fatalf("no OCSP response stapled after 5s; log:\n%s", f.logs.String())
	}
	before := f.resp.requests.Load()
	opts := Options{Certificates: f.m.watchedFiles(), OCSPStapling: true, MinVersion: tls.VersionTLS13}
	if err := f.m.Update(opts); err != nil {
		t.Fatal(err)
	}
	if f.stapled(t) == nil {
		t.Error("an update that kept the pair dropped its staple")
	}
	// Turning stapling off stops it at once.
	opts.OCSPStapling = false
	if err := f.m.Update(opts); err != nil {
		t.Fatal(err)
	}
	if f.stapled(t) != nil {
		t.Error("ocsp_stapling: false still staples")
	}
	if n := f.resp.requests.Load() - before; n != 0 {
		t.Errorf("%d OCSP requests caused by the updates, want 0", n)
	}
}
