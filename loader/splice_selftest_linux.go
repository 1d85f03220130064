//go:build linux

package loader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// spliceRig is a loopback proxy whose connections a Splicer relays, in
// front of a backend that follows a one-byte command: 'e' echoes to EOF,
// 's' reads to EOF and answers the count and the SHA-256, 'd' reads to
// EOF and answers the count, 'g' sends the
// n bytes (uint64 after the command) of seed's stream and closes.
type spliceRig struct {
	s *Splicer
	// userspace relays with splice(2) instead (benchmarks compare them).
	userspace bool
	front     net.Listener
	back      net.Listener
	wg        sync.WaitGroup
	mu        sync.Mutex
	errs      []error
	handled   int
	fallback  int
	// ended lists connections a direction of which ended with an error.
	ended []error
}

func listenNoMPTCP(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}

func newSpliceRig(s *Splicer) (*spliceRig, error) {
	r := &spliceRig{s: s}
	var err error
	if r.back, err = listenNoMPTCP("127.0.0.1:0"); err != nil {
		return nil, err
	}
	if r.front, err = listenNoMPTCP("127.0.0.1:0"); err != nil {
		r.back.Close()
		return nil, err
	}
	r.wg.Add(2)
	go r.serveBackend()
	go r.serveFront()
	return r, nil
}

func (r *spliceRig) addr() string { return r.front.Addr().String() }

func (r *spliceRig) close() []error {
	r.front.Close()
	r.back.Close()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs
}

func (r *spliceRig) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *spliceRig) serveFront() {
	defer r.wg.Done()
	for {
		c, err := r.front.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			var d net.Dialer
			d.SetMultipathTCP(false)
			b, err := d.Dial("tcp", r.back.Addr().String())
			if err != nil {
				r.fail(err)
				return
			}
			defer b.Close()
			if r.userspace {
				relayForTest(c.(*net.TCPConn), b.(*net.TCPConn))
				return
			}
			t, handled, err := r.s.Splice(c.(*net.TCPConn), b.(*net.TCPConn))
			r.mu.Lock()
			if t.AErr != nil || t.BErr != nil {
				r.ended = append(r.ended, fmt.Errorf("a->b %d bytes: %v; b->a %d bytes: %v", t.AtoB, t.AErr, t.BtoA, t.BErr))
			}
			if handled {
				r.handled++
			} else {
				r.fallback++
			}
			r.mu.Unlock()
			if err != nil {
				r.fail(err)
			}
			if !handled && err == nil {
				relayForTest(c.(*net.TCPConn), b.(*net.TCPConn))
			}
		}()
	}
}

// relayForTest is the splice(2) fallback.
func relayForTest(a, b *net.TCPConn) {
	done := make(chan struct{})
	go func() { io.Copy(b, a); b.CloseWrite(); close(done) }()
	io.Copy(a, b)
	a.CloseWrite()
	<-done
}

func (r *spliceRig) serveBackend() {
	defer r.wg.Done()
	for {
		c, err := r.back.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			backendServe(c.(*net.TCPConn))
		}()
	}
}

func backendServe(c *net.TCPConn) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var cmd [1]byte
	if _, err := io.ReadFull(c, cmd[:]); err != nil {
		return
	}
	switch cmd[0] {
	case 'e':
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf[:chunk(rng)])
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				c.CloseWrite()
				return
			}
		}
	case 's':
		h := sha256.New()
		n, err := copyChunked(h, c, rng)
		if err != nil {
			return
		}
		var out [40]byte
		binary.BigEndian.PutUint64(out[:8], uint64(n))
		copy(out[8:], h.Sum(nil))
		c.Write(out[:])
		c.CloseWrite()
		io.Copy(io.Discard, c)
	case 'd':
		n, _ := io.Copy(io.Discard, c)
		var out [8]byte
		binary.BigEndian.PutUint64(out[:], uint64(n))
		c.Write(out[:])
		c.CloseWrite()
	case 'g':
		var hdr [16]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n, seed := binary.BigEndian.Uint64(hdr[:8]), binary.BigEndian.Uint64(hdr[8:])
		writeStream(c, n, seed, rng)
		c.CloseWrite()
		io.Copy(io.Discard, c)
	}
}

// chunk is a random read or write size, log-uniform from 1 B to 256 KiB.
func chunk(rng *rand.Rand) int { return 1 + rng.IntN(1<<rng.IntN(19)) }

func copyChunked(dst io.Writer, src io.Reader, rng *rand.Rand) (int64, error) {
	buf := make([]byte, 512<<10)
	var n int64
	for {
		k, err := src.Read(buf[:min(len(buf), chunk(rng))])
		if k > 0 {
			dst.Write(buf[:k])
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// stream is seed's deterministic byte stream.
type stream struct{ rng *rand.ChaCha8 }

func newStream(seed uint64) *stream {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	return &stream{rand.NewChaCha8(s)}
}

func (s *stream) Read(p []byte) (int, error) { return s.rng.Read(p) }

func writeStream(w io.Writer, n, seed uint64, rng *rand.Rand) error {
	src := newStream(seed)
	buf := make([]byte, 512<<10)
	for n > 0 {
		k := min(uint64(chunk(rng)), n, uint64(len(buf)))
		src.Read(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func streamSum(n, seed uint64) [32]byte {
	h := sha256.New()
	io.CopyN(h, newStream(seed), int64(n))
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// checkEcho sends n bytes of seed's stream and checks the echo.
func checkEcho(addr string, n, seed uint64, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	rng := rand.New(rand.NewPCG(seed, 1))
	errc := make(chan error, 1)
	go func() {
		if _, err := c.Write([]byte{'e'}); err != nil {
			errc <- err
			return
		}
		err := writeStream(c, n, seed, rng)
		c.(*net.TCPConn).CloseWrite()
		errc <- err
	}()
	h := sha256.New()
	got, rerr := copyChunked(h, c, rand.New(rand.NewPCG(seed, 2)))
	werr := <-errc
	if err := errors.Join(werr, rerr); err != nil {
		return fmt.Errorf("echo %d bytes: %w (got %d)", n, err, got)
	}
	if uint64(got) != n || !bytes.Equal(h.Sum(nil), sumSlice(streamSum(n, seed))) {
		return fmt.Errorf("echo %d bytes: got %d bytes, checksum match %v", n, got, bytes.Equal(h.Sum(nil), sumSlice(streamSum(n, seed))))
	}
	return nil
}

func sumSlice(s [32]byte) []byte { return s[:] }

// checkUpload sends n bytes, half-closes, and checks the backend's count
// and checksum.
func checkUpload(addr string, n, seed uint64, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	rng := rand.New(rand.NewPCG(seed, 3))
	if _, err := c.Write([]byte{'s'}); err != nil {
		return err
	}
	if err := writeStream(c, n, seed, rng); err != nil {
		return fmt.Errorf("upload %d bytes: %w", n, err)
	}
	c.(*net.TCPConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("upload %d bytes: reading the answer: %w", n, err)
	}
	want := streamSum(n, seed)
	if len(out) != 40 || binary.BigEndian.Uint64(out[:8]) != n || !bytes.Equal(out[8:], want[:]) {
		got := uint64(0)
		if len(out) >= 8 {
			got = binary.BigEndian.Uint64(out[:8])
		}
		return fmt.Errorf("upload %d bytes: backend got %d bytes (answer %d bytes), checksum mismatch", n, got, len(out))
	}
	return nil
}

// checkDownload asks for n bytes, checks them, then half-closes.
func checkDownload(addr string, n, seed uint64, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	var hdr [17]byte
	hdr[0] = 'g'
	binary.BigEndian.PutUint64(hdr[1:9], n)
	binary.BigEndian.PutUint64(hdr[9:], seed)
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	// The half-close comes last: a client that already sent FIN cannot be
	// spliced in the kernel, and this is to test the kernel.
	h := sha256.New()
	got, err := copyChunked(h, c, rand.New(rand.NewPCG(seed, 4)))
	c.(*net.TCPConn).CloseWrite()
	if err != nil {
		return fmt.Errorf("download %d bytes: %w (got %d)", n, err, got)
	}
	want := streamSum(n, seed)
	if uint64(got) != n || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("download %d bytes: got %d bytes, checksum mismatch", n, got)
	}
	return nil
}

func selfTest(s *Splicer) error {
	r, err := newSpliceRig(s)
	if err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	seed := rand.Uint64()
	timeout := time.Minute // generous: slow (emulated) machines run it too
	var errs []error
	errs = append(errs, checkEcho(r.addr(), 4<<20, seed, timeout))
	errs = append(errs, checkUpload(r.addr(), 2<<20, seed+1, timeout))
	errs = append(errs, checkDownload(r.addr(), 2<<20, seed+2, timeout))
	for i := range 20 {
		errs = append(errs, checkShort(r.addr(), uint64(1+i*97), seed+3+uint64(i), timeout))
	}
	errs = append(errs, r.close()...)
	if r.handled == 0 {
		errs = append(errs, fmt.Errorf("no connection was spliced in the kernel (%d fell back)", r.fallback))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	return nil
}

// checkShort sends n bytes, reads their echo back before half-closing
// (so the proxy sees an open connection), then expects EOF.
func checkShort(addr string, n, seed uint64, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	want := make([]byte, n)
	newStream(seed).Read(want)
	if _, err := c.Write(append([]byte{'e'}, want...)); err != nil {
		return err
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("short %d bytes: %w", n, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("short %d bytes: echo differs", n)
	}
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(c)
	if err != nil || len(rest) != 0 {
		return fmt.Errorf("short %d bytes: after the echo: %d extra bytes, %v", n, len(rest), err)
	}
	return nil
}
