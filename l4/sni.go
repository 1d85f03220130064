package l4

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/upstream"
)

// A listener with `routes:` reads each client's ClientHello (without
// answering it), picks the backend group by its server name and sends the
// backend the hello's bytes, then relays the rest as any connection: the
// TLS session is between the client and the backend. A listener with
// `tls:` terminates TLS itself and relays the plaintext; its routes, if
// any, are chosen by the server name of the handshake.

// Results of a connection refused before a backend was chosen, beside
// proxied, rejected and backend_failed (the result label of
// rustygate_l4_connections_total).
const (
	resultHelloFailed = "hello_failed"
	resultNoRoute     = "no_route"
)

// HelloHandshakeFailed: a terminated TLS handshake failed after a
// well-formed start (no common version or cipher suite, a bad finished
// message), beside the Hello* reasons of readClientHello.
const HelloHandshakeFailed = "handshake_failed"

// maxLoggedSNI bounds the server name written in a log line.
const maxLoggedSNI = 253

// group is a backend group of a listener: a route, or the listener's own
// backends (config.DefaultL4Route).
type group struct {
	name string
	pool *upstream.Pool
}

// sniRoutes chooses a listener's group by server name.
type sniRoutes struct {
	exact map[string]*group
	// wildcard holds "*.example.com" as "example.com".
	wildcard map[string]*group
}

// match returns the group of a lower-cased server name: an exact name,
// else the longest wildcard it is below; nil when none.
func (r *sniRoutes) match(sni string) *group {
	if sni == "" {
		return nil
	}
	if g := r.exact[sni]; g != nil {
		return g
	}
	for name := sni; ; {
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return nil
		}
		name = name[i+1:]
		if g := r.wildcard[name]; g != nil {
			return g
		}
	}
}

// buildRoutes builds the groups of a listener's routes; their backends
// are known to the registry as "LISTENER/ROUTE".
func (m *Manager) buildRoutes(c config.L4Listener) (*sniRoutes, []*upstream.Pool, error) {
	if len(c.Routes) == 0 {
		return nil, nil, nil
	}
	r := &sniRoutes{exact: map[string]*group{}, wildcard: map[string]*group{}}
	var pools []*upstream.Pool
	for _, rt := range c.Routes {
		pool, err := m.buildPool(c.Name+"/"+rt.Name, rt.Backends, rt.Strategy, c.HealthCheck)
		if err != nil {
			return nil, nil, err
		}
		pools = append(pools, pool)
		g := &group{name: rt.Name, pool: pool}
		for _, s := range rt.SNI {
			if suffix, ok := strings.CutPrefix(s, "*."); ok {
				r.wildcard[suffix] = g
			} else {
				r.exact[s] = g
			}
		}
	}
	return r, pools, nil
}

// front is what the listener learned of a connection before choosing its
// backend.
type front struct {
	// conn is what the relay reads and writes: the client's TCP
	// connection, or the TLS server side of it.
	conn  net.Conn
	group *group
	// peeked are bytes read from the client that the backend gets first.
	peeked []byte
	sni    string
	// tls is set on a terminated connection.
	tls bool
}

// accept reads what the listener needs from a new connection: the
// ClientHello on an SNI listener, the whole handshake on a TLS one, within
// handshake_timeout. failed is a Hello* reason; group is nil when no
// route takes the connection.
func (st *listenerState) accept(client net.Conn) (f front, failed string, err error) {
	f = front{conn: client, group: st.def}
	if st.tls == nil && st.routes == nil {
		return f, "", nil
	}
	client.SetDeadline(time.Now().Add(st.cfg.HandshakeTimeout.D()))
	defer client.SetDeadline(time.Time{})
	if st.tls != nil {
		tc := tls.Server(client, st.tls)
		if err := tc.Handshake(); err != nil {
			return f, handshakeReason(err), err
		}
		f.conn, f.tls, f.sni = tc, true, strings.ToLower(tc.ConnectionState().ServerName)
	} else {
		raw, sni, err := readClientHello(client)
		if err != nil {
			var he *helloError
			errors.As(err, &he)
			return f, he.reason, err
		}
		f.peeked, f.sni = raw, sni
	}
	if st.routes != nil {
		if g := st.routes.match(f.sni); g != nil {
			f.group = g
		}
	}
	return f, "", nil
}

// handshakeReason classifies a failed terminated handshake.
func handshakeReason(err error) string {
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &rh):
		return HelloNotTLS
	case errors.Is(err, os.ErrDeadlineExceeded):
		return HelloTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return HelloClientClosed
	}
	return HelloHandshakeFailed
}

// loggedSNI is a server name cut to a length fit for a log line.
func loggedSNI(s string) string {
	if len(s) > maxLoggedSNI {
		return s[:maxLoggedSNI]
	}
	return s
}
