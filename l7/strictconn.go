package l7

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// strictListener hands net/http connections whose HTTP/1.x framing was
// checked by the fast engine's parser first, so the standard engine
// refuses the same request-smuggling vectors (net/http alone accepts
// obs-fold, bare LF, Content-Length beside chunked and a few more).
type strictListener struct {
	net.Listener
	maxHead int
	// headTimeout is read_header_timeout, enforced here from a keep-alive
	// head's first byte (see strictConn.headDeadline).
	headTimeout time.Duration
}

func (l strictListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &strictConn{Conn: c, maxHead: l.maxHead, headTimeout: l.headTimeout}
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		sc.tlsState = &st
	}
	return sc, nil
}

const (
	strictHead = iota
	strictBody
	strictPassthrough
	strictFailed
)

// invalidRequest is what net/http reads in place of a request the parser
// refused: net/http answers it with 400 and closes, in order after any
// response still being written.
var invalidRequest = []byte("\x00 / HTTP/1.1\r\n\r\n")

// strictConn re-emits a client's bytes after validation: each head is
// parsed and passed on as received; each body is decoded and passed on
// re-framed (chunked bodies re-encoded), so what net/http reads is exactly
// what the fast engine would have accepted.
type strictConn struct {
	net.Conn
	maxHead int
	bc      *bufConn
	out     []byte
	off     int
	state   int
	served  int
	req     request
	br      bodyReader
	upgrade bool

	// net/http arms read_header_timeout only once it has the first bytes
	// of a keep-alive head, which this connection passes on only when the
	// head is complete: the head's deadline is kept here instead, from its
	// first byte, and bounds whatever deadline net/http sets meanwhile.
	headTimeout  time.Duration
	dlMu         sync.Mutex
	want         time.Time // the read deadline net/http set
	headDeadline time.Time // zero: no keep-alive head in progress
	headStarted  bool      // the reader's view of headDeadline != zero

	// refused is set once net/http is handed a head it will refuse with
	// one of its canned answers (see Write).
	refused atomic.Bool
	// tlsState is the state of a TLS connection whose handshake is done
	// (nil: plain); requests see it through connTLSContext.
	tlsState *tls.ConnectionState
}

// Write adds a Date header to net/http's canned answers to requests it
// cannot read (400, 431), which have none, as every other response has.
func (s *strictConn) Write(p []byte) (int, error) {
	if !s.refused.Load() || !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return s.Conn.Write(p)
	}
	end := bytes.Index(p, []byte("\r\n\r\n"))
	line := bytes.Index(p, crlf)
	if end < 0 || bytes.Contains(p[:end+2], []byte("\r\nDate: ")) {
		return s.Conn.Write(p)
	}
	w := append(appendDate(append([]byte(nil), p[:line+2]...)), p[line+2:]...)
	if _, err := s.Conn.Write(w); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *strictConn) SetReadDeadline(t time.Time) error {
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	s.want = t
	return s.Conn.SetReadDeadline(s.effectiveLocked())
}

func (s *strictConn) SetDeadline(t time.Time) error {
	if err := s.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return s.SetReadDeadline(t)
}

// effectiveLocked is the earlier of net/http's deadline and the head's.
func (s *strictConn) effectiveLocked() time.Time {
	if s.headDeadline.IsZero() || !s.want.IsZero() && s.want.Before(s.headDeadline) {
		return s.want
	}
	return s.headDeadline
}

// setHeadDeadline starts (d non-zero) or ends a keep-alive head's deadline.
func (s *strictConn) setHeadDeadline(d time.Time) {
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	s.headDeadline = d
	s.Conn.SetReadDeadline(s.effectiveLocked())
}

func (s *strictConn) Read(p []byte) (int, error) {
	for s.off >= len(s.out) {
		s.out, s.off = s.out[:0], 0
		if err := s.produce(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.out[s.off:])
	s.off += n
	return n, nil
}

func (s *strictConn) Close() error {
	err := s.Conn.Close()
	return err
}

func (s *strictConn) produce() error {
	if s.bc == nil {
		s.bc = newBufConn(s.Conn, &clientBufPool, s.maxHead)
		// The pooled read buffer is not returned: net/http may still call
		// Read concurrently with Close.
		s.bc.pooled = nil
	}
	bc := s.bc
	switch s.state {
	case strictFailed:
		return io.EOF
	case strictPassthrough:
		if len(bc.buffered()) == 0 {
			if err := bc.fill(); err != nil {
				return err
			}
		}
		s.out = append(s.out, bc.buffered()...)
		bc.consume(len(bc.buffered()))
		return nil
	case strictBody:
		data, err := s.br.next()
		if len(data) > 0 {
			if s.req.chunked {
				s.out = appendChunkHeader(s.out, len(data))
				s.out = append(s.out, data...)
				s.out = append(s.out, '\r', '\n')
			} else {
				s.out = append(s.out, data...)
			}
		}
		if err == io.EOF {
			if s.req.chunked {
				s.out = append(s.out, '0', '\r', '\n')
				s.out = appendFields(s.out, s.br.trailers)
				s.out = append(s.out, '\r', '\n')
			}
			s.endRequest()
			return nil
		}
		if err != nil {
			s.state = strictFailed
			if len(s.out) > 0 {
				return nil
			}
			return err
		}
		return nil
	}
	for {
		if buf := bc.buffered(); len(buf) > 0 {
			if s.served == 0 && len(buf) >= 3 && string(buf[:3]) == "PRI" {
				if len(buf) < len(h2Preface) && string(h2Preface[:len(buf)]) == string(buf) {
					goto more
				}
				if len(buf) >= len(h2Preface) && string(buf[:len(h2Preface)]) == string(h2Preface) {
					s.state = strictPassthrough
					return s.produce()
				}
			}
			n, err := parseRequest(buf, &s.req)
			switch {
			case err == nil:
				if s.headStarted {
					s.headStarted = false
					s.setHeadDeadline(time.Time{})
				}
				s.out = append(s.out, buf[:n]...)
				bc.consume(n)
				s.served++
				s.upgrade = s.req.upgrade != nil
				if s.req.hasBody() {
					kind := bodyLength
					if s.req.chunked {
						kind = bodyChunked
					}
					s.br.init(bc, kind, s.req.contentLength)
					s.state = strictBody
				} else {
					s.endRequest()
				}
				return nil
			case err != errNeedMore:
				s.out = append(s.out, invalidRequest...)
				s.state = strictFailed
				s.refused.Store(true)
				return nil
			}
			if s.served > 0 && !s.headStarted && s.headTimeout > 0 {
				s.headStarted = true
				s.setHeadDeadline(time.Now().Add(s.headTimeout))
			}
		}
	more:
		if err := bc.fill(); err != nil {
			if err == errHeadTooLarge {
				// Let net/http answer 431 from its own limit.
				s.out = append(s.out, bc.buffered()...)
				s.state = strictPassthrough
				s.refused.Store(true)
				bc.consume(len(bc.buffered()))
				return nil
			}
			return err
		}
	}
}

func (s *strictConn) endRequest() {
	if s.upgrade {
		// After an upgrade the bytes are no longer HTTP/1.1.
		s.state = strictPassthrough
		return
	}
	s.state = strictHead
}
