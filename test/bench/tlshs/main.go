// Command tlshs measures new TLS connections per second against an HTTPS
// server (test/bench/peer.sh, the handshake rows): each of -c workers opens
// a fresh TCP connection, completes a TLS 1.3 handshake, sends one
// `GET` with `Connection: close`, reads the whole response and closes,
// again and again for -d. One completed request is one handshake, so the
// rate of completed requests is the handshake rate; the latency of one is
// connect + handshake + request + response.
//
// The client verifies the server's certificate against -cacert (and the
// name -servername, sent as SNI), offers TLS 1.3 only and the X25519 key
// share only (Go would otherwise also offer the hybrid X25519MLKEM768,
// which a Go server picks and OpenSSL 3.0 does not: the two servers would
// not do the same work). With -resume=false (the default) every
// connection is a full handshake: no session cache, no ticket, no PSK.
// With -resume the workers share one session cache, so after the first
// connection each handshake resumes with a TLS 1.3 ticket (PSK with
// (EC)DHE, psk_dhe_ke: still an X25519 exchange, no certificate).
//
// A request counts only when the answer is 200 (and, with -bytes, has
// that many body bytes); anything else is an error. The last line of
// the output is machine-readable:
//
//	result handshakes_per_sec=2345.6 p50_ms=8.10 p99_ms=21.30 completed=11728 errors=0 resumed=0 client_cpu_us=310.2
//
// client_cpu_us is this client's own CPU time (user+system) per completed
// request: on a machine where client and server share the CPUs it says how
// much of them the client took.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"
)

type options struct {
	url        string
	caFile     string
	serverName string
	conc       int
	dur        time.Duration
	resume     bool
	bytes      int64
	timeout    time.Duration
}

// result is the tally of a run.
type result struct {
	lat      []time.Duration // of the completed requests, sorted
	errs     int
	resumed  int
	firstErr error
	state    *tls.ConnectionState // of the first completed request
	elapsed  time.Duration
	cpu      time.Duration // this process's CPU time over the run
}

// worker is one client's tally.
type worker struct {
	lat      []time.Duration
	errs     int
	resumed  int
	firstErr error
	state    *tls.ConnectionState
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "https://127.0.0.1:8443/", "URL to GET (https)")
	flag.StringVar(&o.caFile, "cacert", "", "PEM file of the CA that issued the server's certificate (required)")
	flag.StringVar(&o.serverName, "servername", "", "name to send as SNI and verify (default: the URL's host)")
	flag.IntVar(&o.conc, "c", 32, "concurrent clients")
	flag.DurationVar(&o.dur, "d", 5*time.Second, "duration")
	flag.BoolVar(&o.resume, "resume", false, "resume sessions (a session cache shared by the clients)")
	flag.Int64Var(&o.bytes, "bytes", -1, "expected body length; -1 accepts any")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "timeout of one connection, handshake and request")
	flag.Parse()
	res, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlshs:", err)
		os.Exit(1)
	}
	report(os.Stdout, o, res)
}

func run(o options) (*result, error) {
	u, err := url.Parse(o.url)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("-url %q: want https://host:port/path", o.url)
	}
	if o.conc < 1 || o.dur <= 0 {
		return nil, errors.New("-c must be at least 1 and -d positive")
	}
	cfg, err := clientConfig(o, u)
	if err != nil {
		return nil, err
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tlshs\r\nConnection: close\r\n\r\n", u.RequestURI(), u.Host)

	ctx, cancel := context.WithTimeout(context.Background(), o.dur)
	defer cancel()
	ws := make([]*worker, o.conc)
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime()
	for i := range ws {
		ws[i] = &worker{}
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			w.loop(ctx, o, addr, req, cfg)
		}(ws[i])
	}
	wg.Wait()
	res := tally(ws)
	res.elapsed, res.cpu = time.Since(start), cpuTime()-cpu0
	return res, nil
}

// clientConfig: verify against -cacert, TLS 1.3 only, X25519 only, HTTP/1.1
// by ALPN, a session cache only with -resume.
func clientConfig(o options, u *url.URL) (*tls.Config, error) {
	if o.caFile == "" {
		return nil, errors.New("-cacert is required: the server's certificate is verified")
	}
	pem, err := os.ReadFile(o.caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", o.caFile)
	}
	name := o.serverName
	if name == "" {
		name = u.Hostname()
	}
	cfg := &tls.Config{
		RootCAs:          roots,
		ServerName:       name,
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
		NextProtos:       []string{"http/1.1"},
	}
	if o.resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4 * o.conc)
	} else {
		cfg.SessionTicketsDisabled = true
	}
	return cfg, nil
}

// loop opens connections one after the other until ctx ends.
func (w *worker) loop(ctx context.Context, o options, addr, req string, cfg *tls.Config) {
	d := &net.Dialer{Timeout: o.timeout}
	for ctx.Err() == nil {
		t0 := time.Now()
		st, err := once(d, o, addr, req, cfg)
		if ctx.Err() != nil && err != nil {
			return // cut short by the end of the run
		}
		if err != nil {
			w.errs++
			if w.firstErr == nil {
				w.firstErr = err
			}
			continue
		}
		w.lat = append(w.lat, time.Since(t0))
		if st.DidResume {
			w.resumed++
		}
		if w.state == nil {
			w.state = st
		}
	}
}

// once makes one connection, one handshake and one request.
func once(d *net.Dialer, o options, addr, req string, cfg *tls.Config) (*tls.ConnectionState, error) {
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	if err := raw.SetDeadline(time.Now().Add(o.timeout)); err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if _, err := io.WriteString(tc, req); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if o.bytes >= 0 && n != o.bytes {
		return nil, fmt.Errorf("body of %d bytes, want %d", n, o.bytes)
	}
	st := tc.ConnectionState()
	return &st, nil
}

// tally merges the workers' counts.
func tally(ws []*worker) *result {
	res := &result{}
	for _, w := range ws {
		res.lat = append(res.lat, w.lat...)
		res.errs += w.errs
		res.resumed += w.resumed
		if res.firstErr == nil {
			res.firstErr = w.firstErr
		}
		if res.state == nil {
			res.state = w.state
		}
	}
	slices.Sort(res.lat)
	return res
}

func report(out io.Writer, o options, res *result) {
	mode := "full handshakes (no resumption)"
	if o.resume {
		mode = "resumption on (shared session cache, TLS 1.3 tickets)"
	}
	fmt.Fprintf(out, "tlshs %s: -c %d -d %s, %s\n", o.url, o.conc, o.dur, mode)
	if st := res.state; st != nil {
		fmt.Fprintf(out, "negotiated: %s %s %s alpn=%q\n", tls.VersionName(st.Version),
			tls.CipherSuiteName(st.CipherSuite), st.CurveID, st.NegotiatedProtocol)
	}
	if res.firstErr != nil {
		fmt.Fprintf(out, "first error: %v\n", res.firstErr)
	}
	n := len(res.lat)
	rate, cpuPer := 0.0, 0.0
	if n > 0 {
		rate = float64(n) / res.elapsed.Seconds()
		cpuPer = float64(res.cpu.Microseconds()) / float64(n)
	}
	fmt.Fprintf(out, "result handshakes_per_sec=%.1f p50_ms=%.3f p99_ms=%.3f completed=%d errors=%d resumed=%d client_cpu_us=%.1f\n",
		rate, ms(pct(res.lat, 0.50)), ms(pct(res.lat, 0.99)), n, res.errs, res.resumed, cpuPer)
}

// pct is the q-quantile of sorted d (nearest rank), 0 when d is empty.
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
