package loader

import (
	"net"
	"net/netip"
)

// limitedListener is the userspace twin of the kernel program: it applies
// the datapath's policy to every accepted connection and closes the ones
// it rejects before anyone sees them. Accepted connections are returned
// as the inner listener made them (a *net.TCPConn stays one).
type limitedListener struct {
	net.Listener
	d *Datapath
}

// Accept returns the next connection the policy admits.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src, port, ok := endpoints(c)
		if !ok || l.d.admit(src, port) {
			return c, nil
		}
		reject(c)
	}
}

// Unwrap returns the listener without the limiter, e.g. to hand its
// socket to another process.
func (l *limitedListener) Unwrap() net.Listener { return l.Listener }

// endpoints returns a TCP connection's source address and local port.
func endpoints(c net.Conn) (netip.Addr, uint16, bool) {
	remote, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, 0, false
	}
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, 0, false
	}
	src := remote.AddrPort().Addr()
	return src, uint16(local.Port), src.IsValid()
}

// reject closes a connection with a reset: the client learns at once, and
// the gateway keeps no TIME_WAIT socket for it.
func reject(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
