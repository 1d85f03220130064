//go:build linux

package loader

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireBPF skips t unless this process can load BPF programs and make
// network namespaces, which takes root (or CAP_BPF, CAP_NET_ADMIN and
// CAP_SYS_ADMIN). With RUSTYGATE_REQUIRE_BPF=1 it fails instead, so a CI
// run cannot pass by skipping every kernel test.
func requireBPF(t testing.TB) {
	t.Helper()
	reason := bpfUnavailable()
	if reason == "" {
		return
	}
	if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" {
		t.Fatalf("RUSTYGATE_REQUIRE_BPF=1, but the kernel tests cannot run: %s", reason)
	}
	t.Skipf("needs BPF (XDP, TCX, LRU and LPM maps) and network namespaces: %s", reason)
}

func bpfUnavailable() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	if err := probe(); err != nil {
		return err.Error()
	}
	if err := features.HaveProgramType(ebpf.SchedCLS); err != nil {
		return err.Error()
	}
	return ""
}

// Addresses of the test network: the server veth has .1, the client veth
// the client addresses.
var (
	serverIP4 = netip.MustParseAddr("10.77.0.1")
	serverIP6 = netip.MustParseAddr("fd77::1")
)

const (
	serverIf   = "rgs0"
	clientIf   = "rgc0"
	serverPort = 8080
	otherPort  = 9090
)

// clientIP returns the i-th client address of a family (4 or 6).
func clientIP(family, i int) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte{10, 77, 1, byte(10 + i)})
	}
	return netip.MustParseAddr(fmt.Sprintf("fd77::1:%d", 10+i))
}

var nsSeq atomic.Int64

// testNet is two network namespaces joined by a veth pair: the server
// side (rgs0, 10.77.0.1 and fd77::1) and the client side (rgc0, with
// clients addresses of each family). Everything is removed in t.Cleanup.
type testNet struct {
	t              *testing.T
	server, client netns.NsHandle
}

func newTestNet(t *testing.T, clients int) *testNet {
	t.Helper()
	n := &testNet{t: t}
	id := fmt.Sprintf("rgt%d-%d", os.Getpid(), nsSeq.Add(1))
	n.server = newNamedNS(t, id+"-s")
	n.client = newNamedNS(t, id+"-c")

	hs, err := netlink.NewHandleAt(n.server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hs.Close)
	hc, err := netlink.NewHandleAt(n.client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: serverIf},
		PeerName:      clientIf,
		PeerNamespace: netlink.NsFd(n.client),
	}
	if err := hs.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	up := func(h *netlink.Handle, name string, addrs ...netip.Prefix) {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
			if a.Addr().Is6() {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(l, addr); err != nil {
				t.Fatalf("%s: add %s: %v", name, a, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	up(hs, "lo")
	up(hc, "lo")
	up(hs, serverIf, netip.PrefixFrom(serverIP4, 16), netip.PrefixFrom(serverIP6, 64))
	var addrs []netip.Prefix
	for i := range clients {
		addrs = append(addrs, netip.PrefixFrom(clientIP(4, i), 16), netip.PrefixFrom(clientIP(6, i), 64))
	}
	up(hc, clientIf, addrs...)
	// IPv6 finishes configuring a device (link-local address, multicast
	// route) only once the kernel has processed the carrier change, which
	// can take a second: until then neighbour discovery fails.
	for _, side := range []struct {
		h    *netlink.Handle
		name string
	}{{hs, serverIf}, {hc, clientIf}} {
		deadline := time.Now().Add(5 * time.Second)
		for !hasLinkLocal(side.h, side.name) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no IPv6 link-local address after 5s", side.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return n
}

func hasLinkLocal(h *netlink.Handle, name string) bool {
	l, err := h.LinkByName(name)
	if err != nil {
		return false
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 {
			return true
		}
	}
	return false
}

// newNamedNS makes a network namespace bound at /var/run/netns/name,
// without moving the calling thread into it.
func newNamedNS(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	var h netns.NsHandle
	err := runLocked(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		h, err = netns.NewNamed(name)
		if err == nil {
			// No duplicate address detection: addresses (link-local ones
			// included) work as soon as the link is up.
			err = noDAD()
		}
		if serr := netns.Set(orig); serr != nil {
			return errors.Join(err, serr, errThreadTainted)
		}
		return err
	})
	if err != nil {
		t.Fatalf("netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return h
}

// noDAD turns IPv6 duplicate address detection off for the interfaces
// made from now on in the calling thread's namespace.
func noDAD() error {
	for _, conf := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+conf+"/accept_dad", []byte("0"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

var errThreadTainted = errors.New("thread left in another namespace")

// runLocked runs fn on a locked OS thread, released afterwards unless fn
// reports that it left the thread in another namespace.
func runLocked(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		if !errors.Is(err, errThreadTainted) {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// in runs fn in namespace ns (see inNetns).
func (n *testNet) in(ns netns.NsHandle, fn func() error) {
	n.t.Helper()
	if err := inNetns(ns, fn); err != nil {
		n.t.Fatal(err)
	}
}

// server is a TCP server in the server namespace that greets every
// connection it accepts with "hi\n" and closes it.
type server struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

// serve listens on [::]:port in the server namespace (v4 and v6) and
// accepts through wrap.
func (n *testNet) serve(port int, wrap func(net.Listener) net.Listener) *server {
	n.t.Helper()
	var ln net.Listener
	n.in(n.server, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	s := &server{ln: wrap(ln)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write([]byte("hi\n"))
			c.Close()
		}
	}()
	n.t.Cleanup(func() {
		s.ln.Close()
		s.wg.Wait()
	})
	return s
}

// dialTimeout bounds one attempt. It is shorter than the kernel's first SYN
// retransmission (1 s), so an attempt whose SYN is dropped sends one SYN.
const dialTimeout = 400 * time.Millisecond

// try opens a connection from src to the server's address of the same
// family and reports whether the server's greeting arrived: the
// client-visible result, the same whether the kernel dropped the SYN or
// userspace reset the connection.
func (n *testNet) try(src netip.Addr, port int) bool {
	n.t.Helper()
	dst := serverIP4
	if src.Is6() {
		dst = serverIP6
	}
	ok := false
	n.in(n.client, func() error {
		ok = attempt(src, netip.AddrPortFrom(dst, uint16(port)))
		return nil
	})
	return ok
}

// tryMany runs count attempts from src at once and returns how many got
// through.
func (n *testNet) tryMany(src netip.Addr, port, count int) int {
	n.t.Helper()
	var wg sync.WaitGroup
	var got atomic.Int64
	for range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n.try(src, port) {
				got.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(got.Load())
}

func attempt(src netip.Addr, dst netip.AddrPort) bool {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	c, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(dialTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "hi\n"
}

// bpffsDir returns a bpffs directory of the test's own, removed in
// t.Cleanup whatever state the test left it in.
func bpffsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("rustygate-test-%d-%d", os.Getpid(), nsSeq.Add(1)))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testLogger logs through t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
