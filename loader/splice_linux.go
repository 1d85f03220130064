//go:build linux

package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/rustygate/rustygate/bpf"
)

// Flags of rg_splice_conn (bpf/splice.c).
const (
	spliceFlagFIN      = 2
	spliceFlagBroken   = 4
	spliceFlagPeerGone = 8
)

// Splicer moves the bytes of socket pairs in the kernel: an sk_skb
// verdict program on a SOCKHASH redirects what each socket receives to
// its peer's egress (bpf/splice.c). It is opt-in: splice(2) is the
// default relay, and callers fall back to it per connection when Splice
// reports handled=false. Its methods are safe for concurrent use.
type Splicer struct {
	// HalfCloseTimeout bounds how long a may keep sending after b
	// finished (DefaultHalfCloseTimeout when zero). Set it before use.
	HalfCloseTimeout time.Duration

	log    *slog.Logger
	objs   bpf.SpliceObjects
	attach *link.RawAttachProgramOptions

	conns, fallbacks, redirected, dups, overlaps, broken atomic.Uint64

	testMu  sync.Mutex
	testErr error
	tested  bool
	closed  atomic.Bool
	closeMu sync.RWMutex
}

// NewSplicer loads and attaches the verdict program. On failure it
// returns a *SpliceError with the reason (no privileges, not supported,
// ...) and leaves nothing behind.
func NewSplicer(log *slog.Logger) (*Splicer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Splicer{log: log}
	if err := s.load(); err != nil {
		s.objs.Close()
		return nil, &SpliceError{Reason: fallbackReason(err), Err: err}
	}
	return s, nil
}

func (s *Splicer) load() error {
	if err := features.HaveProgramType(ebpf.SkSKB); err != nil {
		return fmt.Errorf("probe sk_skb programs: %w", err)
	}
	if err := features.HaveMapType(ebpf.SockHash); err != nil {
		return fmt.Errorf("probe sockhash maps: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove the memlock limit: %w", err)
	}
	if err := bpf.LoadSpliceObjects(&s.objs, nil); err != nil {
		return fmt.Errorf("load splice programs: %w", err)
	}
	opts := link.RawAttachProgramOptions{
		Target:  s.objs.RgSpliceSocks.FD(),
		Program: s.objs.RgSpliceVerdict,
		Attach:  ebpf.AttachSkSKBStreamVerdict,
	}
	if err := link.RawAttachProgram(opts); err != nil {
		return fmt.Errorf("attach the stream verdict: %w", err)
	}
	s.attach = &opts
	return nil
}

// Close detaches the program and frees the maps. It waits for the
// connections being spliced to end: call it after the proxy's shutdown.
func (s *Splicer) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	var err error
	if s.attach != nil {
		err = link.RawDetachProgram(link.RawDetachProgramOptions{
			Target: s.attach.Target, Program: s.attach.Program, Attach: s.attach.Attach,
		})
	}
	return errors.Join(err, s.objs.Close())
}

// Stats returns the counters.
func (s *Splicer) Stats() SpliceStats {
	return SpliceStats{
		Connections:       s.conns.Load(),
		Fallbacks:         s.fallbacks.Load(),
		RedirectedBytes:   s.redirected.Load(),
		DuplicateBytes:    s.dups.Load(),
		Overlaps:          s.overlaps.Load(),
		IntegrityFailures: s.broken.Load(),
	}
}

// sockFD is a socket's descriptor, used only while the conn is open.
type sockFD struct {
	conn *net.TCPConn
	rc   syscall.RawConn
}

func (f sockFD) do(fn func(fd int) error) error {
	var ferr error
	if err := f.rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// handed is how many bytes the socket's TCP has taken for sending since
// it was opened: acknowledged plus still queued (TCP_INFO, SIOCOUTQ, read
// in that order so a race undercounts, never overcounts).
func (f sockFD) handed() (uint64, error) {
	var n uint64
	err := f.do(func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return err
		}
		n = info.Bytes_acked + uint64(outq)
		return nil
	})
	return n, err
}

func (f sockFD) cookie() (uint64, error) {
	var c uint64
	err := f.do(func(fd int) error {
		var err error
		c, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		return err
	})
	return c, err
}

func (f sockFD) insert(m *ebpf.Map, key uint64) error {
	return f.do(func(fd int) error { return m.Update(key, uint64(fd), ebpf.UpdateNoExist) })
}

// poll returns the socket's pending events among events (and errors,
// hang-ups) without waiting.
func (f sockFD) poll(events int16) (int16, error) {
	var rev int16
	err := f.do(func(fd int) error {
		rev = pollNow(fd, events)
		return nil
	})
	return rev, err
}

func pollNow(fd int, events int16) int16 {
	p := []unix.PollFd{{Fd: int32(fd), Events: events}}
	for {
		if _, err := unix.Poll(p, 0); err != unix.EINTR {
			return p[0].Revents
		}
	}
}

// waitHangup parks on the netpoller (no thread) until the socket has
// received a FIN or failed, or check says to stop looking, or the read
// deadline passes. The verdict's data_ready wakes it on every batch of
// bytes it moved, which is when check runs.
func (f sockFD) waitHangup(check func() bool) (int16, error) {
	var rev int16
	err := f.rc.Read(func(fd uintptr) bool {
		rev = pollNow(int(fd), unix.POLLRDHUP)
		return rev != 0 || check()
	})
	return rev, err
}

func rawFD(c *net.TCPConn) (sockFD, error) {
	rc, err := c.SyscallConn()
	return sockFD{c, rc}, err
}

// isInsertRefusal reports an insert the kernel refused for this socket
// only (MPTCP, a socket no longer established): the connection falls
// back to splice(2).
func isInsertRefusal(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.E2BIG) ||
		errors.Is(err, unix.ENOSPC)
}

// spliced is one connection in the maps.
type spliced struct {
	s         *Splicer
	a, b      sockFD
	ca, cb    uint64
	baseA     uint64 // bytes a's TCP had taken when splicing started
	baseB     uint64
	inPeers   [2]bool
	inSocks   [2]bool
	abort     chan struct{}
	abortOnce sync.Once
}

// Splice hands the bytes between a and b to the kernel and returns when
// both directions ended: each FIN is forwarded (a half-close of the peer,
// once every byte before it reached the peer's TCP), a reset or an
// integrity failure ends both. a is the client side: after b finished, a
// has HalfCloseTimeout to finish too. Splice neither reads nor closes
// the connections; the caller closes them afterwards.
//
// handled=false (with err nil) means the kernel refused the sockets (an
// MPTCP socket, a client that already sent FIN) and nothing moved: relay
// with splice(2). Nothing may read from or write to a and b during Splice.
func (s *Splicer) Splice(a, b *net.TCPConn) (Transfer, bool, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed.Load() {
		return Transfer{}, false, ErrClosed
	}
	sp, handled, err := s.start(a, b)
	if !handled {
		s.fallbacks.Add(1)
		return Transfer{}, false, err
	}
	s.conns.Add(1)
	t := sp.run()
	sp.remove()
	return t, true, nil
}

func (s *Splicer) start(a, b *net.TCPConn) (*spliced, bool, error) {
	sp := &spliced{s: s, abort: make(chan struct{})}
	var err error
	if sp.a, err = rawFD(a); err != nil {
		return nil, false, err
	}
	if sp.b, err = rawFD(b); err != nil {
		return nil, false, err
	}
	if sp.ca, err = sp.a.cookie(); err != nil {
		return nil, false, err
	}
	if sp.cb, err = sp.b.cookie(); err != nil {
		return nil, false, err
	}
	if sp.baseA, err = sp.a.handed(); err != nil {
		return nil, false, err
	}
	if sp.baseB, err = sp.b.handed(); err != nil {
		return nil, false, err
	}
	conns := s.objs.RgSpliceConns
	if err := conns.Update(sp.ca, bpf.SpliceRgSpliceConn{Peer: sp.cb}, ebpf.UpdateAny); err != nil {
		return nil, false, fmt.Errorf("kernel splice: %w", err)
	}
	if err := conns.Update(sp.cb, bpf.SpliceRgSpliceConn{Peer: sp.ca}, ebpf.UpdateAny); err != nil {
		sp.remove()
		return nil, false, fmt.Errorf("kernel splice: %w", err)
	}
	// Both into the redirect targets first: no program there, the bytes
	// stay queued on their sockets.
	for i, f := range []sockFD{sp.a, sp.b} {
		key := []uint64{sp.ca, sp.cb}[i]
		if err := f.insert(s.objs.RgSplicePeers, key); err != nil {
			sp.remove()
			if isInsertRefusal(err) {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("kernel splice: insert: %w", err)
		}
		sp.inPeers[i] = true
	}
	for i, f := range []sockFD{sp.a, sp.b} {
		key := []uint64{sp.ca, sp.cb}[i]
		if err := f.insert(s.objs.RgSpliceSocks, key); err != nil {
			// a may already have sent bytes to b: they must reach b's
			// TCP before splice(2) writes after them.
			ferr := sp.unwind()
			if ferr == nil && isInsertRefusal(err) {
				return nil, false, nil
			}
			return nil, false, errors.Join(fmt.Errorf("kernel splice: insert: %w", err), ferr)
		}
		sp.inSocks[i] = true
	}
	// Bytes that arrived before the verdict was attached wait on the
	// receive queue until the next segment: setting SO_RCVLOWAT calls
	// the socket's data_ready, which runs the verdict over them now.
	for _, f := range []sockFD{sp.a, sp.b} {
		f.do(func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1) })
	}
	return sp, true, nil
}

// unwind takes a half-inserted pair out of the maps once what was already
// redirected reached the peer's TCP.
func (sp *spliced) unwind() error {
	for i, f := range []sockFD{sp.a, sp.b} {
		if sp.inSocks[i] {
			sp.s.objs.RgSpliceSocks.Delete([]uint64{sp.ca, sp.cb}[i])
			sp.inSocks[i] = false
			_ = f
		}
	}
	var err error
	if e := sp.flushed(sp.ca, sp.b, sp.baseB); e != nil {
		err = e
	}
	if e := sp.flushed(sp.cb, sp.a, sp.baseA); e != nil {
		err = e
	}
	sp.remove()
	return err
}

// remove takes the pair out of every map and counts what moved.
func (sp *spliced) remove() {
	m := sp.s.objs
	for i, key := range []uint64{sp.ca, sp.cb} {
		if sp.inSocks[i] {
			m.RgSpliceSocks.Delete(key)
		}
		if sp.inPeers[i] {
			m.RgSplicePeers.Delete(key)
		}
	}
	for _, key := range []uint64{sp.ca, sp.cb} {
		var st bpf.SpliceRgSpliceConn
		if m.RgSpliceConns.Lookup(key, &st) == nil {
			sp.s.redirected.Add(st.Bytes)
			sp.s.dups.Add(st.DupBytes)
			sp.s.overlaps.Add(st.Overlaps)
		}
		m.RgSpliceConns.Delete(key)
	}
}

func (sp *spliced) state(key uint64) (bpf.SpliceRgSpliceConn, error) {
	var st bpf.SpliceRgSpliceConn
	err := sp.s.objs.RgSpliceConns.Lookup(key, &st)
	return st, err
}

// stop ends both directions: the read deadlines wake their waits.
func (sp *spliced) stop() {
	sp.abortOnce.Do(func() {
		close(sp.abort)
		sp.a.conn.SetReadDeadline(time.Now())
		sp.b.conn.SetReadDeadline(time.Now())
	})
}

func (sp *spliced) aborted() bool {
	select {
	case <-sp.abort:
		return true
	default:
		return false
	}
}

// run waits for both directions.
func (sp *spliced) run() Transfer {
	var t Transfer
	var wg sync.WaitGroup
	hc := sp.s.HalfCloseTimeout
	if hc <= 0 {
		hc = DefaultHalfCloseTimeout
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.AtoB, t.AErr = sp.direction(sp.ca, sp.a, sp.b, sp.baseB)
		if t.AErr != nil {
			sp.stop()
		}
	}()
	t.BtoA, t.BErr = sp.direction(sp.cb, sp.b, sp.a, sp.baseA)
	if t.BErr != nil {
		sp.stop()
	} else {
		// b finished: a has hc to finish too.
		sp.a.conn.SetReadDeadline(time.Now().Add(hc))
	}
	wg.Wait()
	if errors.Is(t.AErr, ErrSpliceIntegrity) || errors.Is(t.BErr, ErrSpliceIntegrity) {
		sp.s.broken.Add(1)
	}
	return t
}

// direction waits for src's FIN and forwards it to dst once every byte
// before it reached dst's TCP.
func (sp *spliced) direction(key uint64, src, dst sockFD, dstBase uint64) (int64, error) {
	var st bpf.SpliceRgSpliceConn
	var lerr error
	broken := func() bool {
		st, lerr = sp.state(key)
		return lerr != nil || st.Flags&(spliceFlagBroken|spliceFlagFIN|spliceFlagPeerGone) != 0
	}
	rev, err := src.waitHangup(broken)
	if lerr != nil {
		return int64(st.Bytes), lerr
	}
	if err != nil {
		switch {
		case sp.aborted():
			err = ErrSpliceAborted
		case errors.Is(err, os.ErrDeadlineExceeded):
			err = fmt.Errorf("kernel splice: half-close timeout: %w", err)
		}
		return int64(st.Bytes), err
	}
	if st, err = sp.state(key); err != nil {
		return 0, err
	}
	if st.Flags&spliceFlagBroken != 0 {
		return int64(st.Bytes), fmt.Errorf("%w: hole of %d bytes, %d errors, untrimmed overlap of %d bytes", ErrSpliceIntegrity, st.GapBytes, st.Errors, st.LastOverlap)
	}
	if st.Flags&spliceFlagPeerGone != 0 {
		return int64(st.Bytes), errors.New("kernel splice: the peer closed or was reset with bytes still to send")
	}
	if rev&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 && rev&unix.POLLRDHUP == 0 && st.Flags&spliceFlagFIN == 0 {
		return int64(st.Bytes), fmt.Errorf("kernel splice: connection reset (poll events %#x)", rev)
	}
	// The FIN arrived; the verdict sees it after every byte before it.
	// Like splice(2), wait as long as the connection lives (the proxy's
	// idle timeout, or the other direction failing, ends it).
	delay := 50 * time.Microsecond
	for st.Flags&(spliceFlagFIN|spliceFlagBroken|spliceFlagPeerGone) == 0 {
		rev, err := src.poll(0)
		if err != nil {
			return int64(st.Bytes), err
		}
		if rev&unix.POLLERR != 0 {
			return int64(st.Bytes), fmt.Errorf("kernel splice: connection reset after FIN (poll events %#x)", rev)
		}
		if sp.aborted() {
			return int64(st.Bytes), ErrSpliceAborted
		}
		time.Sleep(delay)
		delay = min(2*delay, 5*time.Millisecond)
		if st, err = sp.state(key); err != nil {
			return 0, err
		}
	}
	if st.Flags&spliceFlagBroken != 0 {
		return int64(st.Bytes), fmt.Errorf("%w: hole of %d bytes, %d errors, untrimmed overlap of %d bytes", ErrSpliceIntegrity, st.GapBytes, st.Errors, st.LastOverlap)
	}
	if st.Flags&spliceFlagPeerGone != 0 {
		return int64(st.Bytes), errors.New("kernel splice: the peer closed or was reset with bytes still to send")
	}
	if err := sp.flushed(key, dst, dstBase); err != nil {
		return int64(st.Bytes), err
	}
	if err := dst.do(func(fd int) error { return unix.Shutdown(fd, unix.SHUT_WR) }); err != nil {
		return int64(st.Bytes), err
	}
	return int64(st.Bytes), nil
}

// flushed waits until dst's TCP has taken every byte the verdict
// redirected from key's socket: EOF must not overtake them. A slow reader
// behind dst makes this slow; like splice(2) it waits as long as dst
// lives and the other direction has not failed.
func (sp *spliced) flushed(key uint64, dst sockFD, base uint64) error {
	delay := 50 * time.Microsecond
	for {
		st, err := sp.state(key)
		if err != nil {
			return err
		}
		n, err := dst.handed()
		if err != nil {
			return err
		}
		if n >= base && n-base >= st.Bytes {
			return nil
		}
		rev, err := dst.poll(0)
		if err != nil {
			return err
		}
		if rev&(unix.POLLERR|unix.POLLHUP) != 0 {
			return fmt.Errorf("kernel splice: peer failed with %d of %d redirected bytes sent", n-base, st.Bytes)
		}
		if sp.aborted() {
			return ErrSpliceAborted
		}
		time.Sleep(delay)
		delay = min(2*delay, 5*time.Millisecond)
	}
}

// SelfTestPassed reports whether SelfTest ran and passed.
func (s *Splicer) SelfTestPassed() bool {
	s.testMu.Lock()
	defer s.testMu.Unlock()
	return s.tested && s.testErr == nil
}

// SelfTest splices loopback connections through this kernel and checks
// every byte: an echo of 4 MiB in random chunks both ways at once, an
// upload and a download of 2 MiB each ending in a half-close, and 20 short
// exchanges. Callers use kernel splicing only when it passes. It runs
// once; later calls return the first result.
func (s *Splicer) SelfTest() error {
	s.testMu.Lock()
	defer s.testMu.Unlock()
	if !s.tested {
		s.testErr = selfTest(s)
		s.tested = true
		if s.testErr != nil {
			s.log.Warn("kernel splicing: self-test failed", "error", s.testErr.Error())
		}
	}
	return s.testErr
}
