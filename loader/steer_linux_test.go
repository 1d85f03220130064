//go:build linux

package loader

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

func requireSteering(t *testing.T) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "not running as root"
	} else if err := features.HaveProgramType(ebpf.SkLookup); err != nil {
		reason = err.Error()
	}
	if reason == "" {
		return
	}
	if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" {
		t.Fatalf("RUSTYGATE_REQUIRE_BPF=1, but steering cannot run: %s", reason)
	}
	t.Skipf("needs sk_lookup programs and network namespaces (root): %s", reason)
}

func TestSteeringRejectsBadRange(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		lo, hi uint16
	}{{"127.0.0.1/32", 10, 9}, {"127.0.0.1/32", 0, 9}} {
		if _, err := NewSteering("/nonexistent", netip.MustParsePrefix(tc.prefix), tc.lo, tc.hi, nil); err == nil {
			t.Errorf("%s %d-%d: no error", tc.prefix, tc.lo, tc.hi)
		}
	}
}

// tagServer accepts on ln and greets every connection with tag and a
// newline, then echoes lines.
func tagServer(t *testing.T, ln net.Listener, tag string) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", tag)
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
}

func steerGreet(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

func TestSteeringOneSocketManyPorts(t *testing.T) {
	requireSteering(t)
	ns := newNamedNS(t, "rgsteer"+strconv.Itoa(os.Getpid()))
	dir := filepath.Join(bpffsRoot, "rgsteer-test-"+strconv.Itoa(os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(dir) })
	const lo, hi = 9000, 9099
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	var ln1, ln2 net.Listener
	var st *Steering
	if err := inNetns(ns, func() error {
		err := loUp()
		if err != nil {
			return err
		}
		if ln1, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:9000"); err != nil {
			return err
		}
		if ln2, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		st, err = NewSteering(dir, netip.MustParsePrefix("127.0.0.1/32"), lo, hi, nil)
		return err
	}); err != nil {
		if ln1 != nil {
			ln1.Close()
		}
		if ln2 != nil {
			ln2.Close()
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); ln1.Close(); ln2.Close() })
	tagServer(t, ln1, "one")
	tagServer(t, ln2, "two")
	if err := st.SetListener(ln1.(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}

	dialAll := func(want string) (kept net.Conn) {
		t.Helper()
		if err := inNetns(ns, func() error {
			for p := lo; p <= hi; p++ {
				c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(p), 5*time.Second)
				if err != nil {
					return fmt.Errorf("port %d: %w", p, err)
				}
				got, err := steerGreet(c)
				if err != nil || got != want {
					c.Close()
					return fmt.Errorf("port %d: greeted %q (%v), want %q", p, got, err, want)
				}
				if p == lo+42 {
					kept = c
				} else {
					c.Close()
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { kept.Close() })
		return kept
	}
	old := dialAll("one")

	// A second listener takes over new connections; the old socket's
	// connection goes on.
	if err := st.SetListener(ln2.(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}
	dialAll("two")
	old.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := old.Write([]byte("still here\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := bufio.NewReader(old).ReadString('\n'); err != nil || got != "still here\n" {
		t.Fatalf("old connection after the swap: %q %v", got, err)
	}

	// Close detaches: port 9050 has no socket of its own again.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := inNetns(ns, func() error {
		c, err := net.DialTimeout("tcp4", "127.0.0.1:9050", 2*time.Second)
		if err == nil {
			c.Close()
			return errors.New("port 9050 still answers after Close")
		}
		c, err = net.DialTimeout("tcp4", "127.0.0.1:9000", 2*time.Second)
		if err != nil {
			return fmt.Errorf("port 9000 (ln1's own port) after Close: %w", err)
		}
		defer c.Close()
		if got, err := steerGreet(c); err != nil || got != "one" {
			return fmt.Errorf("port 9000 after Close: %q %v", got, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, SteerMapName)); err != nil {
		t.Fatalf("pinned map after Close: %v", err)
	}
}

// TestSteeringTakeover: a second Steering on the same bpffs directory (a
// new process) shares the pinned SOCKMAP, takes over new connections with
// its listener, and keeps them after the first one closes.
func TestSteeringTakeover(t *testing.T) {
	requireSteering(t)
	ns := newNamedNS(t, "rgtakeover"+strconv.Itoa(os.Getpid()))
	dir := filepath.Join(bpffsRoot, "rgtakeover-test-"+strconv.Itoa(os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(dir) })
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	prefix := netip.MustParsePrefix("127.0.0.0/8")
	var ln1, ln2 net.Listener
	var st1, st2 *Steering
	err := inNetns(ns, func() error {
		err := loUp()
		if err != nil {
			return err
		}
		if ln1, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if ln2, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if st1, err = NewSteering(dir, prefix, 7000, 7009, nil); err != nil {
			return err
		}
		st2, err = NewSteering(dir, prefix, 7000, 7009, nil)
		return err
	})
	t.Cleanup(func() {
		for _, l := range []net.Listener{ln1, ln2} {
			if l != nil {
				l.Close()
			}
		}
		for _, s := range []*Steering{st1, st2} {
			if s != nil {
				s.Close()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	tagServer(t, ln1, "old")
	tagServer(t, ln2, "new")
	dialTag := func(port int) (net.Conn, string) {
		t.Helper()
		var c net.Conn
		var tag string
		if err := inNetns(ns, func() error {
			var err error
			if c, err = net.DialTimeout("tcp4", "127.0.0.2:"+strconv.Itoa(port), 5*time.Second); err != nil {
				return err
			}
			tag, err = steerGreet(c)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, tag
	}
	if err := st1.SetListener(ln1.(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}
	old, tag := dialTag(7003)
	if tag != "old" {
		t.Fatalf("before the takeover: %q", tag)
	}
	if err := st2.SetListener(ln2.(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}
	if _, tag := dialTag(7004); tag != "new" {
		t.Fatalf("after the takeover: %q", tag)
	}
	if err := st1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, tag := dialTag(7009); tag != "new" {
		t.Fatalf("after the old steering closed: %q", tag)
	}
	old.SetDeadline(time.Now().Add(5 * time.Second))
	old.Write([]byte("drain\n"))
	if got, err := bufio.NewReader(old).ReadString('\n'); err != nil || got != "drain\n" {
		t.Fatalf("the old process's connection: %q %v", got, err)
	}
}

// TestSteeringDualStack: ::/0 steers both families to one dual-stack
// socket.
func TestSteeringDualStack(t *testing.T) {
	requireSteering(t)
	ns := newNamedNS(t, "rgdual"+strconv.Itoa(os.Getpid()))
	dir := filepath.Join(bpffsRoot, "rgdual-test-"+strconv.Itoa(os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(dir) })
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	var ln net.Listener
	var st *Steering
	err := inNetns(ns, func() error {
		err := loUp()
		if err != nil {
			return err
		}
		if ln, err = lc.Listen(context.Background(), "tcp", "[::]:0"); err != nil {
			return err
		}
		st, err = NewSteering(dir, netip.MustParsePrefix("::/0"), 7100, 7109, nil)
		return err
	})
	t.Cleanup(func() {
		if st != nil {
			st.Close()
		}
		if ln != nil {
			ln.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	tagServer(t, ln, "dual")
	if err := st.SetListener(ln.(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}
	if err := inNetns(ns, func() error {
		for _, addr := range []string{"127.0.0.1:7100", "127.0.0.1:7109", "[::1]:7100", "[::1]:7105"} {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return fmt.Errorf("%s: %w", addr, err)
			}
			tag, err := steerGreet(c)
			c.Close()
			if err != nil || tag != "dual" {
				return fmt.Errorf("%s: greeted %q (%v)", addr, tag, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestSteeringUnpin: Unpin leaves the pins to a newer Steering on the same
// directory, and the last one's Unpin removes them and the directories
// left empty; Close detaches (the links are gone). ReadStatus shows the
// steering while it runs.
func TestSteeringUnpin(t *testing.T) {
	requireSteering(t)
	ns := newNamedNS(t, "rgunpin"+strconv.Itoa(os.Getpid()))
	base := filepath.Join(bpffsRoot, "rgunpin-test-"+strconv.Itoa(os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := SteerPinDir(base, "games/eu")
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	prefix := netip.MustParsePrefix("127.0.0.1/32")
	var ln net.Listener
	var st1, st2 *Steering
	err := inNetns(ns, func() error {
		var err error
		if ln, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if st1, err = NewSteering(dir, prefix, 7200, 7209, nil); err != nil {
			return err
		}
		st2, err = NewSteering(dir, prefix, 7200, 7219, nil)
		return err
	})
	t.Cleanup(func() {
		for _, s := range []*Steering{st1, st2} {
			if s != nil {
				s.Close()
			}
		}
		if ln != nil {
			ln.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st2.SetListener(ln.(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}

	status, err := ReadStatus(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(status.Steering) != 1 {
		t.Fatalf("status.Steering = %+v, want one listener", status.Steering)
	}
	s := status.Steering[0]
	if s.Listener != "games/eu" || s.Socket == 0 || s.Program == nil || len(s.Program.Attached) != 1 || s.Program.Attached[0].Hook != "sk_lookup" {
		t.Fatalf("steering status %+v (program %+v): want games/eu, a socket, the second program attached by sk_lookup", s, s.Program)
	}
	if status.Mode != ModeUserspace || len(status.Programs) != 0 {
		t.Errorf("steering counted as the limiter: mode %s, programs %+v", status.Mode, status.Programs)
	}
	linkID := link.ID(s.Program.Attached[0].LinkID)

	if err := errors.Join(st1.Close(), st1.Unpin()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{SteerMapName, SteerProgName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("the older steering's Unpin removed the newer one's %s: %v", name, err)
		}
	}
	if err := st2.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err := link.NewFromID(linkID); err == nil {
		l.Close()
		t.Errorf("link %d still exists after Close", linkID)
	}
	if err := st2.Unpin(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after the last Unpin: %v, want it removed with everything in it", base, err)
	}
}

// loUp brings the loopback interface of the current network namespace up.
func loUp() error {
	l, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	return err
}
