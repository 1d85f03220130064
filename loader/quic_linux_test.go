//go:build linux

package loader

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/internal/testpki"
)

// udpSink is a UDP socket in the server namespace that reports every
// datagram it receives, by its first bytes.
type udpSink struct {
	pc net.PacketConn
	ch chan string
	wg sync.WaitGroup
}

func (n *testNet) udpSink(port int) *udpSink {
	n.t.Helper()
	s := &udpSink{ch: make(chan string, 256)}
	n.in(n.server, func() error {
		var err error
		s.pc, err = net.ListenPacket("udp", net.JoinHostPort("::", strconv.Itoa(port)))
		return err
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 2048)
		for {
			k, _, err := s.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.ch <- string(buf[:min(k, 16)])
		}
	}()
	n.t.Cleanup(func() {
		s.pc.Close()
		s.wg.Wait()
	})
	return s
}

// quicInitial is a QUIC v1 long-header Initial packet with connection ID
// dcid (the client's pick), padded to 1200 bytes as clients must.
func quicInitial(dcid []byte) []byte {
	p := []byte{0xc3, 0, 0, 0, 1, byte(len(dcid))}
	p = append(p, dcid...)
	p = append(p, 0) // no source connection ID
	return append(p, make([]byte, 1200-len(p))...)
}

// shortHeader is a 1-RTT packet: it never opens a connection.
func shortHeader(tag byte) []byte { return []byte{0x40, tag, 1, 2, 3, 4, 5, 6, 7, 8} }

// sendUDP sends the datagrams from src to the server's address of its
// family, then a short-header marker, and returns the datagrams that
// arrived before the marker did (all of them: one flow keeps its order).
func (n *testNet) sendUDP(t *testing.T, sink *udpSink, src netip.Addr, port int, dgrams ...[]byte) map[string]bool {
	t.Helper()
	dst := serverIP4
	if src.Is6() {
		dst = serverIP6
	}
	marker := string(shortHeader(0xee))
	n.in(n.client, func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		if err != nil {
			return err
		}
		defer c.Close()
		for _, d := range append(dgrams, []byte(marker)) {
			if _, err := c.Write(d); err != nil {
				return err
			}
		}
		return nil
	})
	got := map[string]bool{}
	timeout := time.After(3 * time.Second)
	for {
		select {
		case d := <-sink.ch:
			if d == marker {
				return got
			}
			got[d] = true
		case <-timeout:
			t.Fatalf("the short-header marker from %s never arrived", src)
		}
	}
}

func dcid(i byte) []byte { return []byte{0xd0, i, 1, 2, 3, 4, 5, 6} }

// TestKernelLimiterQUIC: the kernel limiter charges new QUIC connections
// (Initial packets with a new client-chosen connection ID) to the
// source's token bucket on a guarded UDP port, once per connection
// however many Initial packets its first flight takes; other QUIC
// packets, short connection IDs and unguarded ports pass; deny-listed
// sources are dropped. A real quic-go client gets burst handshakes.
func TestKernelLimiterQUIC(t *testing.T) {
	requireBPF(t)
	n := newTestNet(t, clients)
	dp := n.newDatapath(limiterConfig(config.DatapathKernel, bpffsDir(t)), []int{serverPort})
	if dp.Mode() != ModeKernel {
		t.Fatalf("Mode = %s (%s: %s)", dp.Mode(), dp.Reason(), dp.Detail())
	}
	sink, other := n.udpSink(serverPort), n.udpSink(otherPort)

	for _, src := range []netip.Addr{clientIP(4, srcLimitedA), clientIP(6, srcLimitedA)} {
		before := counters(t, dp)
		var sent [][]byte
		for i := range byte(5) {
			sent = append(sent, quicInitial(dcid(i)))
		}
		// The first connection's second Initial, a short ID, a 1-RTT packet.
		sent = append(sent, quicInitial(dcid(0)), quicInitial([]byte{1, 2, 3, 4}), shortHeader(1))
		got := n.sendUDP(t, sink, src, serverPort, sent...)
		for i, d := range sent {
			key := string(d[:min(len(d), 16)])
			want := i < 3 || i >= 5
			if got[key] != want {
				t.Errorf("%s: datagram %d arrived %v, want %v", src, i, got[key], want)
			}
		}
		if c := sub(counters(t, dp), before); c.Passed != 3 || c.Limited != 2 {
			t.Errorf("%s: counters moved by %+v, want 3 passed, 2 limited", src, c)
		}
	}
	if got := n.sendUDP(t, other, clientIP(4, srcLimitedA), otherPort, quicInitial(dcid(9))); !got[string(quicInitial(dcid(9))[:16])] {
		t.Errorf("an Initial to an unguarded port was dropped")
	}
	if got := n.sendUDP(t, sink, clientIP(4, srcAllowed), serverPort, quicInitial(dcid(1)), quicInitial(dcid(2)), quicInitial(dcid(3)), quicInitial(dcid(4))); len(got) != 4 {
		t.Errorf("allow-listed source: %d of 4 Initials arrived", len(got))
	}
	before := counters(t, dp)
	n.in(n.client, func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(clientIP(4, srcDenied), 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(serverIP4, serverPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(shortHeader(2))
		return err
	})
	waitCounters(t, dp, func(c Counters) bool { return sub(c, before).Denied >= 1 })

	t.Run("quic-go handshakes", func(t *testing.T) { quicHandshakes(t, n, dp, sink) })
}

func waitCounters(t *testing.T, dp *Datapath, ok func(Counters) bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !ok(counters(t, dp)); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("counters %+v", counters(t, dp))
		}
	}
}

// quicHandshakes: a real QUIC client from a fresh source completes burst
// (3) handshakes, however many Initial packets each takes, and the next
// one is dropped.
func quicHandshakes(t *testing.T, n *testNet, dp *Datapath, sink *udpSink) {
	ca := testpki.NewCA(t, "quic CA")
	leaf := ca.Issue(t, testpki.Spec{Hosts: []string{"q.example.com"}})
	sink.pc.Close() // the QUIC server takes the port
	sink.wg.Wait()
	var pc net.PacketConn
	n.in(n.server, func() error {
		var err error
		pc, err = net.ListenPacket("udp", net.JoinHostPort("::", strconv.Itoa(serverPort)))
		return err
	})
	t.Cleanup(func() { pc.Close() })
	ln, err := quic.Listen(pc, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"t"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			c.CloseWithError(0, "")
		}
	}()
	src := clientIP(4, srcOther)
	before := counters(t, dp)
	dial := func() error {
		var conn *net.UDPConn
		n.in(n.client, func() error {
			var err error
			conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
			return err
		})
		defer conn.Close()
		tr := &quic.Transport{Conn: conn}
		defer tr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		c, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(netip.AddrPortFrom(serverIP4, serverPort)),
			&tls.Config{RootCAs: ca.Pool, ServerName: "q.example.com", NextProtos: []string{"t"}}, &quic.Config{HandshakeIdleTimeout: 700 * time.Millisecond})
		if err == nil {
			c.CloseWithError(0, "")
		}
		return err
	}
	start := time.Now()
	for i := range 3 {
		if err := dial(); err != nil {
			t.Errorf("handshake %d within the burst: %v", i+1, err)
		}
	}
	// Past the burst the bucket refills at the rate (1/s): on a slow
	// machine (an emulated guest) the three handshakes can take over a
	// second, and one more may then pass. Dial until one is refused; no
	// more may pass than the burst plus what the time refilled.
	passed, refused := 3, false
	for range 4 {
		if err := dial(); err != nil {
			refused = true
			break
		}
		passed++
	}
	elapsed := time.Since(start)
	allowed := 3 + int(elapsed.Seconds()) // burst + rate x elapsed
	if !refused {
		t.Errorf("no handshake refused past the burst: %d got through in %v", passed, elapsed)
	}
	c := sub(counters(t, dp), before)
	if passed > allowed || c.Passed > uint64(allowed) || c.Limited < 1 {
		t.Errorf("%d handshakes got through and counters moved by %+v in %v: want at most %d passed (burst 3 + 1/s) and some limited", passed, c, elapsed, allowed)
	}
}
