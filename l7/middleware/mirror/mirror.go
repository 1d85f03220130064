package mirror

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/outbound"
)

// Mirror is a built mirror policy.
type Mirror struct {
	route     string
	rep       middleware.Reporter
	base      string // scheme://authority
	keepHost  bool
	threshold uint64 // a request is mirrored when a random uint64 < threshold
	all       bool
	maxBody   int
	max       int64
	timeout   time.Duration
	client    *http.Client
	transport *http.Transport

	inFlight atomic.Int64
	ctx      context.Context
	cancel   context.CancelFunc
	mu       sync.RWMutex // held to read closed and add to wg
	closed   bool
	wg       sync.WaitGroup
}

var (
	_ middleware.Handler = (*Mirror)(nil)
	_ middleware.Closer  = (*Mirror)(nil)
)

// New builds a policy from settings.
func New(s Settings, route string, rep middleware.Reporter) (*Mirror, error) {
	u, err := outbound.ParseURL(s.Backend)
	if err != nil {
		return nil, fmt.Errorf("mirror: backend: %w", err)
	}
	tr, err := outbound.NewTransport(outbound.Client{URL: u, TLS: s.TLS, MaxConns: s.MaxInFlight, Timeout: s.Timeout.D()})
	if err != nil {
		return nil, fmt.Errorf("mirror: tls: %w", err)
	}
	if rep == nil {
		rep = middleware.NopReporter{}
	}
	m := &Mirror{
		route: route, rep: rep, base: u.Scheme + "://" + u.Host, keepHost: s.KeepHost,
		all: s.Percentage >= 100, maxBody: s.MaxBody, max: int64(max(s.MaxInFlight, 1)),
		timeout: s.Timeout.D(), transport: tr,
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	if !m.all {
		m.threshold = uint64(s.Percentage / 100 * math.MaxUint64)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Close cancels the copies in flight, waits for their goroutines and
// closes the idle connections.
func (m *Mirror) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	m.transport.CloseIdleConnections()
	return nil
}

// Handle implements middleware.Handler. It never delays the request:
// it builds the copy and hands it to a goroutine.
func (m *Mirror) Handle(r middleware.Request) *middleware.Reply {
	if !m.all && rand.Uint64() >= m.threshold {
		return nil
	}
	body, ok := r.BufferedBody()
	if !ok || len(body) > m.maxBody {
		m.count("skipped", r.PeerIP())
		return nil
	}
	if m.inFlight.Add(1) > m.max {
		m.inFlight.Add(-1)
		m.count("dropped", r.PeerIP())
		return nil
	}
	req, err := m.copyOf(r, body)
	if err != nil {
		m.inFlight.Add(-1)
		m.count("failed", r.PeerIP())
		return nil
	}
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		m.inFlight.Add(-1)
		return nil
	}
	m.wg.Add(1)
	m.mu.RUnlock()
	go m.send(req, r.PeerIP())
	return nil
}

// copyOf builds the copy of r.
func (m *Mirror) copyOf(r middleware.Request, body []byte) (*http.Request, error) {
	var rd io.Reader = http.NoBody
	if len(body) > 0 {
		rd = bytes.NewReader(bytes.Clone(body))
	}
	req, err := http.NewRequestWithContext(m.ctx, string(r.Method()), m.base+string(r.URI()), rd)
	if err != nil {
		return nil, err
	}
	outbound.CopyHeaders(req.Header, r, func(lower string) bool {
		return outbound.NotCopied(lower) || lower == "x-forwarded-for" || lower == "x-forwarded-proto" || lower == "x-forwarded-host"
	})
	req.Header.Set("X-Forwarded-For", outbound.ForwardedFor(r))
	req.Header.Set("X-Forwarded-Proto", r.Scheme())
	if h := r.Host(); len(h) > 0 {
		req.Header.Set("X-Forwarded-Host", string(h))
		if m.keepHost {
			req.Host = string(h)
		}
	}
	return req, nil
}

// send sends one copy and reads its answer away.
func (m *Mirror) send(req *http.Request, client netip.Addr) {
	defer m.wg.Done()
	defer m.inFlight.Add(-1)
	ctx, cancel := context.WithTimeout(req.Context(), m.timeout)
	defer cancel()
	resp, err := m.client.Do(req.WithContext(ctx))
	if err != nil {
		m.count("failed", client)
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		m.count("failed", client)
		return
	}
	m.count("sent", client)
}

func (m *Mirror) count(result string, client netip.Addr) {
	m.rep.Rejected(Name, m.route, result, client)
}

// InFlight returns the copies being sent.
func (m *Mirror) InFlight() int { return int(m.inFlight.Load()) }
