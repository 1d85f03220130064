package l7

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 limits of the server (h2conn.go, h2stream.go). Memory per
// connection is bounded by h2ConnWindow of request body plus
// h2MaxStreams header lists of max_header_bytes.
const (
	h2MaxStreams = 128
	// h2StreamWindow is the initial receive window of a stream and
	// h2ConnWindow the connection's: a request body is buffered up to the
	// stream window, and all of a connection's up to the connection window.
	h2StreamWindow = 256 << 10
	h2ConnWindow   = 1 << 20
	// h2MaxHandlers bounds the streams whose exchanges still run,
	// including those the client reset (rapid reset, CVE-2023-44487):
	// past it the connection is closed with ENHANCE_YOUR_CALM.
	h2MaxHandlers = 2 * h2MaxStreams
	// Control frames (PING, SETTINGS, RST_STREAM, PRIORITY, empty DATA,
	// WINDOW_UPDATE) are paid from a budget of h2FrameBurst refilled at
	// h2FrameRate a second; a client that exhausts it is flooding.
	h2FrameBurst = 4096
	h2FrameRate  = 1024
)

var h2ClientPreface = []byte(http2.ClientPreface)

// h2Conn is one HTTP/2 connection on RustyGate's own server: the
// connection's goroutine reads frames (readLoop); each stream's exchange
// runs on its own goroutine and writes its frames under wmu; the last
// writer of a burst writes what all of them buffered to the socket, so
// the frames of many streams leave in one write without a goroutine of
// its own in between.
type h2Conn struct {
	srv *Server
	cc  *clientConn
	c   net.Conn
	fr  *http2.Framer
	bw  *bufio.Writer

	// wmu serializes frame writes; werr is the first write error.
	// writers counts the goroutines in or waiting for write; owed says
	// frames wait for a flush that a writer left to the next one.
	wmu     sync.Mutex
	werr    error
	wdl     lazyDeadline
	writers atomic.Int32
	owed    bool

	// mu guards what follows, shared by the reader and the streams.
	mu      sync.Mutex
	streams map[uint32]*h2Stream
	// handlers counts exchanges still running (reset streams included).
	handlers int
	// maxID is the highest stream id the client opened; goAwayID the
	// last one served once GOAWAY was sent (0: not sent).
	maxID, goAwayID uint32
	goingAway       bool
	// sendWin is the connection's send window; peerWin the client's
	// initial stream window; peerFrame its largest frame.
	sendWin   int64
	peerWin   int64
	peerFrame uint32
	// recvWin is what the client may still send on the connection;
	// unacked, what was consumed and not yet given back.
	recvWin, unacked int64
	closed           bool
	idleDL           lazyDeadline

	budget     float64
	budgetTime time.Time
	// done streams' exchanges: wg waits for them before the connection
	// returns.
	wg sync.WaitGroup
}

// errH2Closed is returned to streams once the connection is gone.
var errH2Closed = errors.New("http2: connection closed")

// serveHTTP2 serves c as HTTP/2 until it closes. r reads the connection
// (with any bytes already buffered); the client preface is still unread.
func (s *Server) serveHTTP2(cc *clientConn, c net.Conn, r io.Reader) {
	sc := s.snap.Load().Config.Server
	hc := &h2Conn{
		srv: s, cc: cc, c: c,
		bw:        bufio.NewWriterSize(c, 32<<10),
		streams:   map[uint32]*h2Stream{},
		sendWin:   65535,
		peerWin:   65535,
		peerFrame: 16384,
		recvWin:   h2ConnWindow,
		budget:    h2FrameBurst,
	}
	br := bufio.NewReaderSize(r, 16<<10)
	hc.fr = http2.NewFramer(hc.bw, br)
	hc.fr.MaxHeaderListSize = uint32(sc.MaxHeaderBytes)
	hc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	hc.fr.ReadMetaHeaders.SetMaxStringLength(sc.MaxHeaderBytes)
	hc.fr.SetReuseFrames()
	// The default SETTINGS_MAX_FRAME_SIZE is advertised: larger frames are
	// a FRAME_SIZE_ERROR.
	hc.fr.SetMaxReadFrameSize(16384)
	if !s.addH2Conn(hc) {
		hc.goingAway = true
	}
	defer s.removeH2Conn(hc)
	hc.serve(br, sc.ReadHeaderTimeout.D())
}

// serve reads the preface and then frames until the connection ends.
func (hc *h2Conn) serve(br *bufio.Reader, rht time.Duration) {
	defer hc.close()
	hc.c.SetReadDeadline(time.Now().Add(rht))
	var pre [24]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
		hc.writeSettings()
		hc.goAway(http2.ErrCodeProtocol)
		return
	}
	hc.writeSettings()
	if hc.goingAway {
		hc.goAway(http2.ErrCodeNo)
	}
	hc.c.SetReadDeadline(time.Time{})
	hc.armIdle()
	if err := hc.readLoop(); err != nil {
		hc.srv.slog.Debug("http2 connection ends", "client_ip", hc.cc.clientIP, "error", err.Error())
		var ce http2.ConnectionError
		switch {
		case errors.As(err, &ce):
			hc.goAway(http2.ErrCode(ce))
		case errors.Is(err, http2.ErrFrameTooLarge):
			hc.goAway(http2.ErrCodeFrameSize)
		}
	}
}

// writeSettings sends the server preface: SETTINGS, then the connection
// window raised to h2ConnWindow.
func (hc *h2Conn) writeSettings() {
	sc := hc.srv.snap.Load().Config.Server
	hc.withWriter(func(fr *http2.Framer) error {
		err := fr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(sc.MaxHeaderBytes)},
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		)
		if err != nil {
			return err
		}
		return fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	})
}

// withWriter writes frames with f and has them flushed.
func (hc *h2Conn) withWriter(f func(fr *http2.Framer) error) error {
	return hc.write(true, f)
}

// write runs f with the framer's write side under wmu. With flush (or a
// flush owed by an earlier writer), the buffered frames go to the socket,
// unless another writer waits for wmu: that one flushes them, with its
// own.
func (hc *h2Conn) write(flush bool, f func(fr *http2.Framer) error) error {
	hc.writers.Add(1)
	hc.wmu.Lock()
	defer func() {
		hc.writers.Add(-1)
		hc.wmu.Unlock()
	}()
	if hc.werr != nil {
		return hc.werr
	}
	hc.armWrite()
	if f != nil {
		if err := f(hc.fr); err != nil {
			hc.werr = err
			return err
		}
	}
	hc.owed = hc.owed || flush
	if !hc.owed || hc.writers.Load() > 1 || hc.bw.Buffered() == 0 {
		return nil
	}
	hc.owed = false
	if err := hc.bw.Flush(); err != nil {
		hc.werr = err
		hc.c.Close()
		return err
	}
	return nil
}

// armWrite bounds every socket write by write_timeout (wmu held): a
// client that stops reading is cut, never an unbounded stall.
func (hc *h2Conn) armWrite() {
	wt := hc.srv.snap.Load().Config.Server.WriteTimeout.D()
	hc.wdl.ensureWrite(hc.c, time.Now().Add(wt), deadlineSlack(wt))
}

// kick flushes what is buffered.
func (hc *h2Conn) kick() { hc.write(true, nil) }

// goAway sends GOAWAY with code and the last stream served, flushed
// synchronously (the connection closes next).
func (hc *h2Conn) goAway(code http2.ErrCode) {
	hc.mu.Lock()
	last := hc.maxID
	hc.mu.Unlock()
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	if hc.werr != nil {
		return
	}
	hc.armWrite()
	hc.fr.WriteGoAway(last, code, nil)
	hc.bw.Flush()
}

// close ends the connection: streams still running are cancelled and
// waited for.
func (hc *h2Conn) close() {
	hc.mu.Lock()
	hc.closed = true
	for _, st := range hc.streams {
		st.cancelLocked(errH2Closed)
	}
	hc.mu.Unlock()
	hc.wmu.Lock()
	if hc.werr == nil {
		hc.armWrite()
		hc.bw.Flush()
		hc.werr = errH2Closed
	}
	hc.wmu.Unlock()
	if cw, ok := hc.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	hc.c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(hc.c, 1<<20))
	hc.c.Close()
	hc.wg.Wait()
}

// armIdle sets the read deadline to idle_timeout when no stream is open
// (mu not held by the caller), and clears it otherwise.
func (hc *h2Conn) armIdle() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.armIdleLocked()
}

func (hc *h2Conn) armIdleLocked() {
	if len(hc.streams) == 0 {
		idle := hc.srv.snap.Load().Config.Server.IdleTimeout.D()
		if hc.goingAway {
			idle = 0
		}
		hc.idleDL.ensureRead(hc.c, time.Now().Add(idle), deadlineSlack(idle))
		return
	}
	if !hc.idleDL.cur.IsZero() {
		hc.idleDL.cur = time.Time{}
		hc.c.SetReadDeadline(time.Time{})
	}
}

// spend takes one control frame from the flood budget; false: the
// client is flooding.
func (hc *h2Conn) spend() bool {
	now := time.Now()
	if !hc.budgetTime.IsZero() {
		hc.budget = min(h2FrameBurst, hc.budget+now.Sub(hc.budgetTime).Seconds()*h2FrameRate)
	}
	hc.budgetTime = now
	hc.budget--
	return hc.budget >= 0
}

// startGoAway begins a graceful shutdown: GOAWAY with the last stream
// opened, no new streams, the connection closing once the open ones end.
func (hc *h2Conn) startGoAway() {
	hc.mu.Lock()
	if hc.goingAway {
		hc.mu.Unlock()
		return
	}
	hc.goingAway = true
	last := hc.maxID
	hc.goAwayID = last
	hc.armIdleLocked()
	hc.mu.Unlock()
	hc.withWriter(func(fr *http2.Framer) error { return fr.WriteGoAway(last, http2.ErrCodeNo, nil) })
}

// addH2Conn registers hc for graceful shutdown; false when the server is
// stopping already.
func (s *Server) addH2Conn(hc *h2Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h2conns == nil {
		s.h2conns = map[*h2Conn]struct{}{}
	}
	s.h2conns[hc] = struct{}{}
	return !s.stopping.Load()
}

func (s *Server) removeH2Conn(hc *h2Conn) {
	s.mu.Lock()
	delete(s.h2conns, hc)
	s.mu.Unlock()
}

// goAwayH2 starts a graceful shutdown of every HTTP/2 connection.
func (s *Server) goAwayH2() {
	s.mu.Lock()
	conns := make([]*h2Conn, 0, len(s.h2conns))
	for hc := range s.h2conns {
		conns = append(conns, hc)
	}
	s.mu.Unlock()
	for _, hc := range conns {
		hc.startGoAway()
	}
}
