package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/rustygate/rustygate/config"
)

// HTTP/2 to backends.
//
// A pool whose protocol is h2c, h2 or auto speaks HTTP/2 through
// x/net/http2's client Transport: requests are multiplexed on a few
// connections per backend, a connection takes new streams up to the
// backend's SETTINGS_MAX_CONCURRENT_STREAMS and another one is dialled
// when all are full; a connection silent for h2ReadIdle is PINGed and
// closed when the PING is not answered within h2PingTimeout; a GOAWAY
// sends the streams the backend did not process (and new ones) to another
// connection, as a stale HTTP/1.1 connection does. Flow-control windows
// are the Transport's: 4 MiB per stream and 1 GiB per connection, so one
// slow stream never stalls the others and a bulk stream is bounded by
// the network, not by window updates.

// Liveness of HTTP/2 backend connections (variables for the tests).
var (
	// h2ReadIdle is how long a backend connection may stay silent before
	// it is checked with a PING.
	h2ReadIdle = 15 * time.Second
	// h2PingTimeout bounds the wait for the PING's answer.
	h2PingTimeout = 5 * time.Second
)

const (
	// h2FrameSize is the largest DATA frame the proxy accepts.
	h2FrameSize = 1 << 20
	// autoRecheck is how long an auto pool keeps to HTTP/1.1 after a
	// backend chose it by ALPN, before offering h2 again.
	autoRecheck = time.Minute
)

// errH2NotSelected: an auto pool's backend chose HTTP/1.1 by ALPN; the
// request goes over HTTP/1.1 instead (it was not sent).
var errH2NotSelected = errors.New("backend did not select h2 by ALPN")

// h2Pool is the HTTP/2 client side of one backend.
type h2Pool struct {
	tr     *http2.Transport
	scheme string // "http" (h2c) or "https"
	auto   bool
	// h1Until (unix nanoseconds): an auto pool whose backend chose
	// HTTP/1.1 sends requests over HTTP/1.1 until then.
	h1Until atomic.Int64
	// tlsConfig offers h2 (and http/1.1 for auto) by ALPN.
	tlsConfig *tls.Config
}

// newH2Pool sets up HTTP/2 for p per protocol (h2c, h2 or auto; nil for
// http1, and for auto on a cleartext backend).
func newH2Pool(p *connPool, protocol string) *h2Pool {
	switch {
	case protocol == config.ProtocolH2C && p.tls == nil:
	case (protocol == config.ProtocolH2 || protocol == config.ProtocolAuto) && p.tls != nil:
	default:
		return nil
	}
	h := &h2Pool{scheme: "http", auto: protocol == config.ProtocolAuto}
	if p.tls != nil {
		h.scheme = "https"
		h.tlsConfig = p.tls.config.Clone()
		h.tlsConfig.NextProtos = []string{"h2"}
		if h.auto {
			h.tlsConfig.NextProtos = []string{"h2", "http/1.1"}
		}
	}
	h.tr = &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return p.dialH2(ctx, h)
		},
		// The proxy relays bodies as they are: no Accept-Encoding added,
		// nothing decompressed.
		DisableCompression: true,
		MaxReadFrameSize:   h2FrameSize,
		IdleConnTimeout:    p.idleTimeout,
		ReadIdleTimeout:    h2ReadIdle,
		PingTimeout:        h2PingTimeout,
	}
	return h
}

// use reports whether a request goes over HTTP/2 now.
func (h *h2Pool) use() bool {
	if h == nil {
		return false
	}
	return !h.auto || time.Now().UnixNano() >= h.h1Until.Load()
}

func (h *h2Pool) close() {
	if h != nil {
		h.tr.CloseIdleConnections()
	}
}

// dialH2 opens a connection for the HTTP/2 transport, handshaking with
// ALPN on an https:// backend, within the connect timeout.
func (p *connPool) dialH2(ctx context.Context, h *h2Pool) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.dialer.Timeout)
	defer cancel()
	c, err := p.dialer.DialContext(ctx, "tcp", p.backend.Addr)
	if err != nil {
		return nil, err
	}
	if h.tlsConfig != nil {
		tc, err := handshake(ctx, c, h.tlsConfig)
		if err != nil {
			return nil, err
		}
		switch proto := tc.ConnectionState().NegotiatedProtocol; {
		case proto == "h2":
		case h.auto:
			tc.Close()
			h.h1Until.Store(time.Now().Add(autoRecheck).UnixNano())
			return nil, errH2NotSelected
		case proto != "":
			tc.Close()
			return nil, &tlsDialError{errors.New("backend selected " + proto + " by ALPN, not h2")}
		}
		c = tc
	}
	p.open.Add(1)
	return &countedConn{Conn: c, open: &p.open}, nil
}

// countedConn takes itself off its pool's connection count when closed.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// roundTrip sends req on one of the pool's connections.
func (h *h2Pool) roundTrip(req *http.Request) (*http.Response, error) {
	return h.tr.RoundTrip(req)
}
