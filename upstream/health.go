package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Active health checks.
//
// Each checked backend has a goroutine that probes it: once right away,
// then every Interval ± 10% (jitter spreads the probes of many backends),
// each probe bounded by Timeout. UnhealthyThreshold failures in a row mark
// an up backend down; HealthyThreshold successes in a row mark a down
// backend up. A backend starts up: it serves traffic until probes prove it
// down, so a start or a reload never answers 503 while the first probes
// run. The verdict lives in the backend's shared state, so a checker that
// replaces another on reload (its settings changed) continues from the
// current verdict. Each transition calls OnChange exactly once.

// Health check defaults, used when a field is zero.
const (
	DefaultHealthInterval  = 5 * time.Second
	DefaultHealthTimeout   = 2 * time.Second
	DefaultHealthThreshold = 2
)

// Prober checks one backend once. It returns nil when the backend is
// healthy. It must return promptly once ctx is done.
type Prober interface {
	Probe(ctx context.Context, b *Backend) error
}

// HealthOptions configures active health checks.
type HealthOptions struct {
	// Prober runs one check (required).
	Prober Prober
	// Interval between probes of one backend (default 5s).
	Interval time.Duration
	// Timeout of one probe (default 2s; at most Interval).
	Timeout time.Duration
	// HealthyThreshold successes in a row mark a backend up (default 2).
	HealthyThreshold int
	// UnhealthyThreshold failures in a row mark it down (default 2).
	UnhealthyThreshold int
}

func (h HealthOptions) normalise() (HealthOptions, error) {
	switch {
	case h.Prober == nil:
		return h, errors.New("health check has no prober")
	case h.Interval < 0 || h.Timeout < 0:
		return h, errors.New("health check interval and timeout must not be negative")
	case h.HealthyThreshold < 0 || h.UnhealthyThreshold < 0:
		return h, errors.New("health check thresholds must not be negative")
	}
	if h.Interval == 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout == 0 {
		h.Timeout = min(DefaultHealthTimeout, h.Interval)
	}
	if h.Timeout > h.Interval {
		return h, fmt.Errorf("health check timeout %s exceeds the interval %s", h.Timeout, h.Interval)
	}
	if h.HealthyThreshold == 0 {
		h.HealthyThreshold = DefaultHealthThreshold
	}
	if h.UnhealthyThreshold == 0 {
		h.UnhealthyThreshold = DefaultHealthThreshold
	}
	return h, nil
}

// healthKey identifies health settings: a checker is reused across a
// reload when its key is unchanged. A prober that is a fmt.Stringer is
// identified by its String (HTTPProber and TCPProber describe their
// settings), another by its value if comparable, else never reused.
type healthKey struct {
	interval, timeout time.Duration
	healthy, unhealth int
	prober            any
}

type uniqueProber struct{ _ byte }

func keyOf(h HealthOptions) healthKey {
	k := healthKey{interval: h.Interval, timeout: h.Timeout, healthy: h.HealthyThreshold, unhealth: h.UnhealthyThreshold}
	switch p := h.Prober.(type) {
	case fmt.Stringer:
		k.prober = reflect.TypeOf(p).String() + " " + p.String()
	default:
		if reflect.TypeOf(p).Comparable() {
			k.prober = p
		} else {
			k.prober = &uniqueProber{}
		}
	}
	return k
}

// OnChange is called on each health transition of a backend, with the
// new state and a human-readable reason. It runs on a checker goroutine
// and must not block for long.
type OnChange func(b *Backend, up bool, reason string)

// probeLoop probes one backend until stopped.
type probeLoop struct {
	key      healthKey
	opt      HealthOptions
	onChange OnChange
	// backend and prober may be replaced by a reload that reuses the
	// loop; the state behind the backend stays the same.
	backend atomic.Pointer[Backend]
	prober  atomic.Pointer[proberBox]

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

type proberBox struct{ p Prober }

func newProbeLoop(b *Backend, opt HealthOptions, onChange OnChange) *probeLoop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &probeLoop{key: keyOf(opt), opt: opt, onChange: onChange, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	l.backend.Store(b)
	l.prober.Store(&proberBox{opt.Prober})
	return l
}

func (l *probeLoop) start() { go l.run() }

// stop cancels the loop; wait waits for it to end. A probe in flight is
// cancelled and its result dropped.
func (l *probeLoop) stop() { l.cancel() }
func (l *probeLoop) wait() { <-l.done }

func (l *probeLoop) run() {
	defer close(l.done)
	var ok, fail int
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		b := l.backend.Load()
		ctx, cancel := context.WithTimeout(l.ctx, l.opt.Timeout)
		err := l.prober.Load().p.Probe(ctx, b)
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s", l.opt.Timeout)
		}
		cancel()
		if l.ctx.Err() != nil {
			return
		}
		l.record(b, err, &ok, &fail)
		t.Reset(jitter(l.opt.Interval))
	}
}

// record applies one probe result.
func (l *probeLoop) record(b *Backend, err error, ok, fail *int) {
	s := b.st
	if err == nil {
		*fail = 0
		*ok++
		if *ok >= l.opt.HealthyThreshold && s.down.Load() && s.down.CompareAndSwap(true, false) {
			l.notify(b, true, fmt.Sprintf("%d health checks in a row passed", *ok))
		}
		return
	}
	*ok = 0
	*fail++
	if *fail >= l.opt.UnhealthyThreshold && !s.down.Load() && s.down.CompareAndSwap(false, true) {
		l.notify(b, false, fmt.Sprintf("%d health checks in a row failed, last: %v", *fail, err))
	}
}

func (l *probeLoop) notify(b *Backend, up bool, reason string) {
	if l.onChange != nil {
		l.onChange(b, up, reason)
	}
}

// jitter returns d ± 10%.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// HealthChecker runs active health checks over a set of backends. A
// Registry runs them itself for the pools given to Sync; HealthChecker is
// for a caller that manages backends on its own.
type HealthChecker struct {
	loops     []*probeLoop
	startOnce sync.Once
	stopOnce  sync.Once
}

// NewHealthChecker prepares checks of backends with opt. onChange may be
// nil.
func NewHealthChecker(backends []*Backend, opt HealthOptions, onChange OnChange) (*HealthChecker, error) {
	opt, err := opt.normalise()
	if err != nil {
		return nil, err
	}
	h := &HealthChecker{}
	for _, b := range backends {
		h.loops = append(h.loops, newProbeLoop(b, opt, onChange))
	}
	return h, nil
}

// Start starts probing. It is a no-op after the first call.
func (h *HealthChecker) Start() {
	h.startOnce.Do(func() {
		for _, l := range h.loops {
			l.start()
		}
	})
}

// Stop stops probing and waits for the checker's goroutines to end. The
// backends keep their last verdict.
func (h *HealthChecker) Stop() {
	h.stopOnce.Do(func() {
		started := true
		h.startOnce.Do(func() { started = false })
		for _, l := range h.loops {
			l.stop()
		}
		if started {
			for _, l := range h.loops {
				l.wait()
			}
		}
	})
}

// HTTPProber checks a backend with GET Path on its address. A response
// whose status matches ExpectStatus is healthy; redirects are not
// followed.
type HTTPProber struct {
	// Path is requested on the backend's host:port, not below its base
	// path ("" means "/").
	Path string
	// ExpectStatus lists codes ("200") and classes ("2xx"); default
	// ["2xx", "3xx"].
	ExpectStatus []string
	// Client sends the probe; nil means a client that opens a connection
	// per probe and does not follow redirects.
	Client *http.Client
	// TLS returns the TLS client configuration of an https:// backend
	// (nil for the others); the probe then goes over TLS with it, so a
	// backend whose certificate the proxy would refuse is marked down.
	// It is not used with Client.
	TLS func(b *Backend) *tls.Config
	// H2 sends the probe over HTTP/2: with prior knowledge (h2c) on
	// http://, with ALPN h2 on https://. It is not used with Client.
	H2 bool
}

var defaultProbeClient = &http.Client{
	Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{}).DialContext,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// tlsProbeClient returns a client like defaultProbeClient that speaks
// TLS with cfg. Without keep-alives it holds nothing between probes; a
// ClientSessionCache in cfg lets each probe resume the last session.
func tlsProbeClient(cfg *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{}).DialContext,
			TLSClientConfig:   cfg,
		},
		CheckRedirect: defaultProbeClient.CheckRedirect,
	}
}

// probeBodyLimit is how much of a probe response body is read.
const probeBodyLimit = 4096

// Probe implements Prober.
func (p HTTPProber) Probe(ctx context.Context, b *Backend) error {
	path := p.Path
	if path == "" {
		path = "/"
	}
	scheme, client := "http", p.Client
	if client == nil {
		var cfg *tls.Config
		if b.Scheme == "https" && p.TLS != nil {
			scheme, cfg = "https", p.TLS(b)
		}
		switch {
		case p.H2:
			var done func()
			client, done = h2ProbeClient(cfg)
			defer done()
		case cfg != nil:
			client = tlsProbeClient(cfg)
		default:
			client = defaultProbeClient
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+b.Addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "RustyGate-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.CopyN(io.Discard, resp.Body, probeBodyLimit)
	resp.Body.Close()
	if !StatusMatches(resp.StatusCode, p.ExpectStatus) {
		return fmt.Errorf("unexpected status %d", resp.StatusCode)
	}
	return nil
}

// String describes the settings that identify the prober.
func (p HTTPProber) String() string {
	if p.H2 {
		return "GET " + p.Path + " over h2 expect " + strings.Join(p.ExpectStatus, ",")
	}
	return "GET " + p.Path + " expect " + strings.Join(p.ExpectStatus, ",")
}

// StatusMatches reports whether code matches one of expect: codes ("200")
// and classes ("2xx"). An empty list means ["2xx", "3xx"].
func StatusMatches(code int, expect []string) bool {
	if len(expect) == 0 {
		return code >= 200 && code < 400
	}
	for _, e := range expect {
		if len(e) == 3 && e[1:] == "xx" && e[0] >= '1' && e[0] <= '9' {
			if code/100 == int(e[0]-'0') {
				return true
			}
			continue
		}
		if n, err := strconv.Atoi(e); err == nil && n == code {
			return true
		}
	}
	return false
}

// TCPProber checks that a TCP connection to the backend's address can be
// opened (and closes it at once).
type TCPProber struct{}

// Probe implements Prober.
func (TCPProber) Probe(ctx context.Context, b *Backend) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// String describes the prober.
func (TCPProber) String() string { return "tcp connect" }
