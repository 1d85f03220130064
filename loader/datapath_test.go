package loader

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustygate/rustygate/config"
)

// TestUserspaceNeverTouchesBPF: with datapath.mode userspace, New neither
// loads nor mounts anything, whatever the bpffs path.
func TestUserspaceNeverTouchesBPF(t *testing.T) {
	dir := "/nonexistent/rustygate-test"
	dp, err := New(config.Datapath{Mode: config.DatapathUserspace, BPFFS: dir, Interfaces: []string{"no-such-if"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	if dp.Mode() != ModeUserspace || dp.Reason() != ReasonConfigured {
		t.Errorf("mode %s, reason %s", dp.Mode(), dp.Reason())
	}
	if _, err := os.Stat("/nonexistent"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat /nonexistent: %v", err)
	}
	if _, ok := dp.WrapListener(nil).(*limitedListener); !ok {
		t.Error("WrapListener did not wrap")
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		cfg  config.Datapath
		want string
	}{
		{config.Datapath{Mode: "ebpf"}, `datapath.mode: unknown mode "ebpf" (supported: auto, kernel, userspace)`},
		{config.Datapath{Mode: "userspace", KernelRateLimit: config.KernelRateLimit{Deny: []string{"x"}}}, `datapath.kernel_rate_limit.deny[0]: invalid CIDR "x"`},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg, nil, nil); err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
	if runtime.GOOS != "linux" {
		_, err := New(config.Datapath{Mode: config.DatapathKernel}, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "(not_linux)") {
			t.Errorf("kernel mode on %s: %v", runtime.GOOS, err)
		}
	}
}

// listenLoopback listens on a free port of 127.0.0.1.
func listenLoopback(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// loopbackServer serves "hi\n" on ln through dp's limiter.
func loopbackServer(t *testing.T, dp *Datapath, ln net.Listener) (accepted *atomic.Int64) {
	t.Helper()
	wrapped := dp.WrapListener(ln)
	if u, ok := wrapped.(interface{ Unwrap() net.Listener }); !ok || u.Unwrap() != ln {
		t.Error("the wrapped listener does not unwrap to the original")
	}
	accepted = new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := wrapped.Accept()
			if err != nil {
				return
			}
			if _, ok := c.(*net.TCPConn); !ok {
				t.Errorf("accepted a %T, want the *net.TCPConn itself", c)
			}
			accepted.Add(1)
			c.Write([]byte("hi\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() {
		wrapped.Close()
		<-done
	})
	return accepted
}

// greet connects from src (a loopback address) and reports whether the
// greeting came: a rejected connection is reset before it.
func greet(t *testing.T, src string, port int) bool {
	t.Helper()
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 3)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "hi\n"
}

// TestWrapListener runs the userspace twin on loopback, from several
// 127.0.0.0/8 sources (Linux routes all of them to lo).
func TestWrapListener(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs 127.0.0.0/8 on lo")
	}
	cfg := config.Datapath{
		Mode: config.DatapathUserspace,
		KernelRateLimit: config.KernelRateLimit{
			Rate: 1, Burst: 2, Ports: []string{"auto"}, MaxSources: 16,
			Allow: []string{"127.0.0.4"}, Deny: []string{"127.0.0.3/32"},
		},
	}
	ln, port := listenLoopback(t)
	otherLn, otherPort := listenLoopback(t)
	dp, err := New(cfg, []int{port}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	accepted := loopbackServer(t, dp, ln)
	otherAccepted := loopbackServer(t, dp, otherLn)

	for i, want := range []bool{true, true, false, false} {
		if got := greet(t, "127.0.0.2", port); got != want {
			t.Errorf("127.0.0.2 attempt %d: greeted %v, want %v", i+1, got, want)
		}
	}
	if greet(t, "127.0.0.3", port) {
		t.Error("deny-listed 127.0.0.3 greeted")
	}
	for i := range 5 {
		if !greet(t, "127.0.0.4", port) {
			t.Errorf("allow-listed 127.0.0.4 attempt %d failed", i+1)
		}
	}
	for i := range 4 {
		if !greet(t, "127.0.0.2", otherPort) {
			t.Errorf("unguarded port: attempt %d failed", i+1)
		}
	}
	ban := netip.MustParseAddr("127.0.0.5")
	if err := dp.Ban(ban, time.Minute); err != nil {
		t.Fatal(err)
	}
	if greet(t, "127.0.0.5", port) {
		t.Error("banned 127.0.0.5 greeted")
	}
	if bans := dp.Bans(); len(bans) != 1 || bans[0].IP != ban {
		t.Errorf("Bans() = %v", bans)
	}
	if err := dp.Unban(ban); err != nil {
		t.Fatal(err)
	}
	if !greet(t, "127.0.0.5", port) {
		t.Error("unbanned 127.0.0.5 failed")
	}

	// Every rejection was counted, and none reached the server.
	c, err := dp.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counters{Passed: 8, Limited: 2, Denied: 1, Banned: 1}); c != want {
		t.Errorf("Counters() = %+v, want %+v", c, want)
	}
	if accepted.Load() != 8 || otherAccepted.Load() != 4 {
		t.Errorf("accepted %d and %d", accepted.Load(), otherAccepted.Load())
	}

	// A reload lifts the deny list and keeps the buckets.
	cfg.KernelRateLimit.Deny = nil
	if err := dp.Update(cfg, []int{port}); err != nil {
		t.Fatal(err)
	}
	if !greet(t, "127.0.0.3", port) {
		t.Error("127.0.0.3 still denied after the reload")
	}
	if greet(t, "127.0.0.2", port) {
		t.Error("the reload refilled 127.0.0.2's bucket")
	}
}

func TestDatapathClosed(t *testing.T) {
	dp, err := New(config.Datapath{Mode: config.DatapathUserspace}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dp.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	a := netip.MustParseAddr("10.0.0.1")
	if err := dp.Ban(a, time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Ban after Close: %v", err)
	}
	if err := dp.Unban(a); !errors.Is(err, ErrClosed) {
		t.Errorf("Unban after Close: %v", err)
	}
	if _, err := dp.Counters(); !errors.Is(err, ErrClosed) {
		t.Errorf("Counters after Close: %v", err)
	}
	if err := dp.Update(config.Datapath{Mode: config.DatapathUserspace}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close: %v", err)
	}
	if err := (&Datapath{}).Ban(netip.Addr{}, 0); err == nil {
		t.Error("Ban accepted an invalid address")
	}
}

// TestAutoAttachesNothingUnneeded: with mode auto and no kernel feature
// configured, no program is loaded onto the host's interfaces.
func TestAutoAttachesNothingUnneeded(t *testing.T) {
	cfg := config.Datapath{Mode: config.DatapathAuto, BPFFS: t.TempDir(), KernelRateLimit: config.KernelRateLimit{MaxSources: 16}}
	dp, err := New(cfg, []int{8080}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	if dp.Mode() != ModeUserspace || dp.Reason() != ReasonNotNeeded {
		t.Fatalf("mode %s (%s), want userspace (not_needed)", dp.Mode(), dp.Reason())
	}
}

// TestUserspaceChangeRevert: in the userspace twin, a prepared change is
// not enforced until Commit, and Revert enforces the previous policy
// again.
func TestUserspaceChangeRevert(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs 127.0.0.0/8 on lo")
	}
	cfg := config.Datapath{Mode: config.DatapathUserspace, KernelRateLimit: config.KernelRateLimit{Ports: []string{"auto"}, MaxSources: 16}}
	ln, port := listenLoopback(t)
	dp, err := New(cfg, []int{port}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	loopbackServer(t, dp, ln)

	deny := cfg
	deny.KernelRateLimit.Deny = []string{"127.0.0.3/32"}
	if _, err := dp.Prepare(config.Datapath{Mode: config.DatapathUserspace, KernelRateLimit: config.KernelRateLimit{Deny: []string{"127.0.0.0/33"}}}, nil); err == nil {
		t.Error("Prepare of a bad CIDR succeeded")
	}
	c, err := dp.Prepare(deny, []int{port})
	if err != nil {
		t.Fatal(err)
	}
	if !greet(t, "127.0.0.3", port) {
		t.Fatal("denied by a change not committed")
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	if greet(t, "127.0.0.3", port) {
		t.Fatal("not denied after Commit")
	}
	if err := c.Revert(); err != nil {
		t.Fatal(err)
	}
	if !greet(t, "127.0.0.3", port) {
		t.Fatal("still denied after Revert")
	}
}
