package forwardauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/outbound"
)

// Auth is a built forward_auth policy.
type Auth struct {
	route     string
	rep       middleware.Reporter
	log       *slog.Logger
	address   string
	method    string
	only      []string        // request_headers (nil: all)
	copy      []string        // copy_headers
	ours      map[string]bool // lower-case names the policy sets on a call
	timeout   time.Duration
	onError   int
	maxBody   int
	client    *http.Client
	transport *http.Transport
	ctx       context.Context
	cancel    context.CancelFunc
	lastLog   atomic.Int64
}

var (
	_ middleware.Handler = (*Auth)(nil)
	_ middleware.Closer  = (*Auth)(nil)
)

// New builds a policy from settings.
func New(s Settings, route string, rep middleware.Reporter, log *slog.Logger) (*Auth, error) {
	u, err := outbound.ParseURL(s.Address)
	if err != nil {
		return nil, fmt.Errorf("forward_auth: address: %w", err)
	}
	tr, err := outbound.NewTransport(outbound.Client{URL: u, TLS: s.TLS, MaxConns: s.MaxConns, Timeout: s.Timeout.D()})
	if err != nil {
		return nil, fmt.Errorf("forward_auth: tls: %w", err)
	}
	if rep == nil {
		rep = middleware.NopReporter{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Auth{
		route: route, rep: rep, log: log, address: u.String(), method: s.Method,
		only: s.RequestHeaders, copy: s.CopyHeaders, timeout: s.Timeout.D(), onError: s.OnError,
		maxBody: s.MaxResponseBody, transport: tr,
		ours: map[string]bool{"x-forwarded-method": true, "x-forwarded-proto": true, "x-forwarded-host": true, "x-forwarded-uri": true, "x-forwarded-for": true},
	}
	a.client = &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// Close ends the calls in flight and closes the idle connections.
func (a *Auth) Close() error {
	a.cancel()
	a.transport.CloseIdleConnections()
	return nil
}

// Handle implements middleware.Handler.
func (a *Auth) Handle(r middleware.Request) *middleware.Reply {
	for _, h := range a.copy {
		r.DelHeader(h)
	}
	ctx, cancel := context.WithTimeout(a.ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, a.method, a.address, nil)
	if err != nil {
		return a.fail(r.PeerIP(), err)
	}
	a.describe(req.Header, r)
	resp, err := a.client.Do(req)
	if err != nil {
		return a.fail(r.PeerIP(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		for _, h := range a.copy {
			if vs := resp.Header.Values(h); len(vs) > 0 {
				r.SetHeader(h, strings.Join(vs, ", "))
			}
		}
		// Read what is small so the connection goes back to the pool.
		io.Copy(io.Discard, io.LimitReader(resp.Body, int64(a.maxBody)))
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(a.maxBody)+1))
	switch {
	case err != nil:
		return a.fail(r.PeerIP(), fmt.Errorf("reading the answer: %w", err))
	case len(body) > a.maxBody:
		return a.fail(r.PeerIP(), fmt.Errorf("answer %d has a body over max_response_body (%d bytes)", resp.StatusCode, a.maxBody))
	}
	a.rep.Rejected(Name, a.route, "denied", r.PeerIP())
	return &middleware.Reply{Status: resp.StatusCode, Headers: replyHeaders(resp.Header), Body: body}
}

// describe sets the headers of a call: the client's, then the
// X-Forwarded-* ones.
func (a *Auth) describe(h http.Header, r middleware.Request) {
	skip := func(lower string) bool { return outbound.NotCopied(lower) || a.ours[lower] }
	if a.only == nil {
		outbound.CopyHeaders(h, r, skip)
	} else {
		var vals [][]byte
		for _, name := range a.only {
			vals = r.RequestHeaderValues(name, vals[:0])
			for _, v := range vals {
				h.Add(name, string(v))
			}
		}
	}
	h.Set("X-Forwarded-Method", string(r.Method()))
	h.Set("X-Forwarded-Proto", r.Scheme())
	h.Set("X-Forwarded-Host", string(r.Host()))
	h.Set("X-Forwarded-Uri", string(r.URI()))
	h.Set("X-Forwarded-For", outbound.ForwardedFor(r))
}

// replyHeaders are the headers of the service's refusal the client gets.
func replyHeaders(h http.Header) [][2]string {
	var out [][2]string
	for name, vs := range h {
		// The proxy sets the framing, Date and X-Request-Id of its reply.
		if l := strings.ToLower(name); outbound.NotCopied(l) || l == "date" || l == "x-request-id" {
			continue
		}
		for _, v := range vs {
			out = append(out, [2]string{name, v})
		}
	}
	return out
}

var errorBody = []byte(`{"error":"authorization service unavailable"}` + "\n")

// fail answers on_error, and logs the cause at most once a second.
func (a *Auth) fail(ip netip.Addr, err error) *middleware.Reply {
	a.rep.Rejected(Name, a.route, "error", ip)
	now := time.Now().UnixNano()
	if last := a.lastLog.Load(); now-last >= int64(time.Second) && a.lastLog.CompareAndSwap(last, now) {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", a.timeout)
		}
		a.log.Warn("forward_auth: the auth service gave no usable answer", "route", a.route, "address", a.address, "status", a.onError, "error", err.Error())
	}
	return &middleware.Reply{Status: a.onError, Headers: [][2]string{{"Content-Type", "application/json"}}, Body: errorBody}
}
