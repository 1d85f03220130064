//go:build linux

package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/loader"
)

// version is a kernel version, major.minor.
type version struct{ major, minor int }

func (v version) atLeast(w version) bool {
	return v.major > w.major || v.major == w.major && v.minor >= w.minor
}

func (v version) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func parseVersion(s string) (version, error) {
	major, rest, ok := strings.Cut(s, ".")
	if !ok {
		return version{}, fmt.Errorf("kernel version %q: want major.minor", s)
	}
	minor, _, _ := strings.Cut(rest, ".")
	minor = strings.TrimRightFunc(minor, func(r rune) bool { return r < '0' || r > '9' })
	var v version
	var err1, err2 error
	v.major, err1 = strconv.Atoi(major)
	v.minor, err2 = strconv.Atoi(minor)
	if err := errors.Join(err1, err2); err != nil {
		return version{}, fmt.Errorf("kernel version %q: %w", s, err)
	}
	return v, nil
}

// kernelUnderTest is the version the matrix says it booted
// (RUSTYGATE_KERNEL), checked against the running kernel's release so a
// mislabelled entry in kernels.list cannot pass with the wrong
// expectations. Outside the matrix the tests skip.
func kernelUnderTest(t *testing.T) version {
	t.Helper()
	label := os.Getenv("RUSTYGATE_KERNEL")
	if label == "" {
		t.Skip("runs inside the kernel matrix (make test-kernels), which sets RUSTYGATE_KERNEL")
	}
	want, err := parseVersion(label)
	if err != nil {
		t.Fatal(err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	got, err := parseVersion(release)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("RUSTYGATE_KERNEL=%s, but the running kernel is %s (%s)", label, got, release)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the kernel matrix runs its tests as root")
	}
	return got
}

// Device names of the namespace every probe runs in.
const (
	vethIf = "rgk0"
	peerIf = "rgk1"
)

// inNewNetns runs fn on an OS thread of its own, moved into a new network
// namespace with lo up and a veth pair rgk0 <-> rgk1 up. The thread is
// never handed back to the scheduler: it ends with fn, and the namespace
// goes with it (and with whatever fn left open in it).
func inNewNetns(fn func(veth netlink.Link) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare the network namespace: %w", err)
			}
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(lo); err != nil {
				return fmt.Errorf("lo up: %w", err)
			}
			veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vethIf}, PeerName: peerIf}
			if err := netlink.LinkAdd(veth); err != nil {
				return fmt.Errorf("add veth (is the veth module loaded?): %w", err)
			}
			for _, name := range []string{vethIf, peerIf} {
				l, err := netlink.LinkByName(name)
				if err != nil {
					return err
				}
				if err := netlink.LinkSetUp(l); err != nil {
					return fmt.Errorf("%s up: %w", name, err)
				}
			}
			l, err := netlink.LinkByName(vethIf)
			if err != nil {
				return err
			}
			return fn(l)
		}()
	}()
	return <-errc
}

func loadProgram(spec *ebpf.ProgramSpec) (*ebpf.Program, error) {
	if spec.License == "" {
		spec.License = "GPL"
	}
	return ebpf.NewProgram(spec)
}

// returning is a program that returns code.
func returning(code int32) asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, code), asm.Return()}
}

func xdpPass() (*ebpf.Program, error) {
	return loadProgram(&ebpf.ProgramSpec{Name: "rg_probe_xdp", Type: ebpf.XDP, Instructions: returning(2)}) // XDP_PASS
}

func tcOK() (*ebpf.Program, error) {
	return loadProgram(&ebpf.ProgramSpec{Name: "rg_probe_tc", Type: ebpf.SchedCLS, Instructions: returning(0)}) // TC_ACT_OK
}

// A feature RustyGate uses or may use, the kernel version that brought
// it, and a probe that uses it for real where a load alone proves little.
type feature struct {
	name  string
	since version
	what  string
	probe func() error
}

var featureList = []feature{
	{"xdp", version{4, 8}, "XDP programs", func() error { return features.HaveProgramType(ebpf.XDP) }},
	{"sched_cls", version{4, 1}, "tc (sched_cls) programs", func() error { return features.HaveProgramType(ebpf.SchedCLS) }},
	{"lru_hash", version{4, 10}, "LRU hash maps (limiter sources)", func() error { return features.HaveMapType(ebpf.LRUHash) }},
	{"lpm_trie", version{4, 11}, "LPM trie maps (allow/deny lists)", func() error { return features.HaveMapType(ebpf.LPMTrie) }},
	{"xdp_link_native_veth", version{5, 9}, "XDP bpf_link, native mode on veth", probeXDP(vethIf, link.XDPDriverMode)},
	{"xdp_link_generic_lo", version{5, 9}, "XDP bpf_link, generic mode on lo", probeXDP("lo", link.XDPGenericMode)},
	{"tcx", version{6, 6}, "TCX ingress link (link.AttachTCX)", probeTCX},
	{"clsact_cls_bpf", version{4, 5}, "netlink clsact qdisc + cls_bpf direct-action filter", probeClsact},
	{"sk_lookup", version{5, 9}, "sk_lookup program attached to a network namespace", probeSkLookup},
	{"sockhash_stream_verdict", version{4, 18}, "SOCKHASH with an sk_skb stream verdict, a TCP socket inserted, bytes still flowing", probeSockhash},
}

// TestFeatures checks each feature exists exactly on the kernels that
// should have it, and prints one RG-FEATURE line per feature for the
// matrix summary.
func TestFeatures(t *testing.T) {
	v := kernelUnderTest(t)
	for _, f := range featureList {
		t.Run(f.name, func(t *testing.T) {
			err := f.probe()
			want := v.atLeast(f.since)
			state := "yes"
			if err != nil {
				state = "no"
			}
			fmt.Printf("RG-FEATURE %s %s since=%s err=%q\n", f.name, state, f.since, errString(err))
			switch {
			case want && err != nil:
				t.Errorf("%s (since %s) fails on %s: %v", f.what, f.since, v, err)
			case !want && err == nil:
				t.Errorf("%s works on %s, before %s where it should appear: fix the version in featureList", f.what, v, f.since)
			case !want && !errors.Is(err, ebpf.ErrNotSupported):
				t.Errorf("%s is missing on %s as expected, but the error is not ErrNotSupported: %v", f.what, v, err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func probeXDP(ifname string, mode link.XDPAttachFlags) func() error {
	return func() error {
		return inNewNetns(func(netlink.Link) error {
			l, err := netlink.LinkByName(ifname)
			if err != nil {
				return err
			}
			prog, err := xdpPass()
			if err != nil {
				return err
			}
			defer prog.Close()
			lk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.Attrs().Index, Flags: mode})
			if err != nil {
				return err
			}
			return lk.Close()
		})
	}
}

func probeTCX() error {
	return inNewNetns(func(veth netlink.Link) error {
		prog, err := tcOK()
		if err != nil {
			return err
		}
		defer prog.Close()
		lk, err := link.AttachTCX(link.TCXOptions{Program: prog, Interface: veth.Attrs().Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		return lk.Close()
	})
}

// probeClsact attaches a filter the pre-TCX way: a clsact qdisc
// (sch_ingress module) and a cls_bpf filter (cls_bpf module).
func probeClsact() error {
	return inNewNetns(func(veth netlink.Link) error {
		prog, err := tcOK()
		if err != nil {
			return err
		}
		defer prog.Close()
		idx := veth.Attrs().Index
		qdisc := &netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
			QdiscType:  "clsact",
		}
		if err := netlink.QdiscAdd(qdisc); err != nil {
			return fmt.Errorf("add clsact qdisc (sch_ingress module): %w", err)
		}
		filter := &netlink.BpfFilter{
			FilterAttrs:  netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.HANDLE_MIN_INGRESS, Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1},
			Fd:           prog.FD(),
			Name:         "rg_probe_tc",
			DirectAction: true,
		}
		if err := netlink.FilterAdd(filter); err != nil {
			return fmt.Errorf("add cls_bpf filter (cls_bpf module): %w", err)
		}
		filters, err := netlink.FilterList(veth, netlink.HANDLE_MIN_INGRESS)
		if err != nil {
			return err
		}
		if len(filters) != 1 {
			return fmt.Errorf("%d ingress filters after adding one", len(filters))
		}
		return netlink.QdiscDel(qdisc)
	})
}

func probeSkLookup() error {
	return inNewNetns(func(netlink.Link) error {
		prog, err := loadProgram(&ebpf.ProgramSpec{
			Name: "rg_probe_lookup", Type: ebpf.SkLookup, AttachType: ebpf.AttachSkLookup,
			Instructions: returning(1), // SK_PASS
		})
		if err != nil {
			return err
		}
		defer prog.Close()
		ns, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			return err
		}
		defer ns.Close()
		lk, err := link.AttachNetNs(int(ns.Fd()), prog)
		if err != nil {
			return err
		}
		defer lk.Close()
		// Connections still reach the listener with the program passing.
		return roundTrip(nil)
	})
}

// probeSockhash puts a connected TCP socket into a SOCKHASH that has a
// stream verdict program (SK_PASS) attached: what kernel splicing builds
// on. Bytes must still reach the socket.
func probeSockhash() error {
	return inNewNetns(func(netlink.Link) error {
		if err := features.HaveMapType(ebpf.SockHash); err != nil {
			return err
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "rg_probe_socks", Type: ebpf.SockHash, KeySize: 8, ValueSize: 8, MaxEntries: 16})
		if err != nil {
			return err
		}
		defer m.Close()
		prog, err := loadProgram(&ebpf.ProgramSpec{
			Name: "rg_probe_verdict", Type: ebpf.SkSKB, AttachType: ebpf.AttachSkSKBStreamVerdict,
			Instructions: returning(1), // SK_PASS
		})
		if err != nil {
			return err
		}
		defer prog.Close()
		opts := link.RawAttachProgramOptions{Target: m.FD(), Program: prog, Attach: ebpf.AttachSkSKBStreamVerdict}
		if err := link.RawAttachProgram(opts); err != nil {
			return fmt.Errorf("attach stream verdict: %w", err)
		}
		defer link.RawDetachProgram(link.RawDetachProgramOptions{Target: m.FD(), Program: prog, Attach: ebpf.AttachSkSKBStreamVerdict})
		return roundTrip(func(c *net.TCPConn) error {
			raw, err := c.SyscallConn()
			if err != nil {
				return err
			}
			var perr error
			if err := raw.Control(func(fd uintptr) { perr = m.Put(uint64(1), uint64(fd)) }); err != nil {
				return err
			}
			if perr != nil {
				return fmt.Errorf("insert a TCP socket: %w", perr)
			}
			return nil
		})
	})
}

// roundTrip connects to a listener on 127.0.0.1 (TCP, not MPTCP), calls
// prepare with the accepted connection, and checks 64 KiB sent by the
// client arrive there intact.
func roundTrip(prepare func(*net.TCPConn) error) error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	client, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		return err
	}
	defer client.Close()
	srv, err := ln.Accept()
	if err != nil {
		return err
	}
	defer srv.Close()
	if prepare != nil {
		if err := prepare(srv.(*net.TCPConn)); err != nil {
			return err
		}
	}
	payload := make([]byte, 64<<10)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	go func() {
		client.Write(payload)
		client.(*net.TCPConn).CloseWrite()
	}()
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(srv)
	if err != nil {
		return fmt.Errorf("read through the program: %w", err)
	}
	if string(got) != string(payload) {
		return fmt.Errorf("got %d bytes, want the %d sent", len(got), len(payload))
	}
	return nil
}

var dirSeq atomic.Int64

// TestLimiterMode checks which mode, reason and attachment the loader
// reports for its limiter on this kernel, through its exported API only.
// With XDP free the limiter always takes native XDP on veth and generic
// XDP on lo. With the interface's XDP hook taken by another program, the
// loader tries TCX: on 6.6 and later the limiter runs there; before 6.6
// the kernel has no TCX and the loader, which has no netlink clsact
// fallback, must say so (auto: userspace, not_supported; kernel: an
// error), never crash.
func TestLimiterMode(t *testing.T) {
	v := kernelUnderTest(t)
	hasTCX := v.atLeast(version{6, 6})
	type want struct {
		mode, reason, detail string
		err                  string // New fails with an error containing this
	}
	cases := []struct {
		name    string
		mode    string
		ifaces  []string
		takeXDP bool
		want    want
	}{
		{"veth", config.DatapathAuto, []string{vethIf}, false,
			want{mode: loader.ModeKernel, reason: loader.ReasonAvailable, detail: "attached to rgk0 (xdp/native)"}},
		{"lo", config.DatapathAuto, []string{"lo"}, false,
			want{mode: loader.ModeKernel, reason: loader.ReasonAvailable, detail: "attached to lo (xdp/generic)"}},
		{"veth_xdp_taken_auto", config.DatapathAuto, []string{vethIf}, true,
			map[bool]want{
				true:  {mode: loader.ModeKernel, reason: loader.ReasonAvailable, detail: "attached to rgk0 (tcx)"},
				false: {mode: loader.ModeUserspace, reason: loader.ReasonNotSupported, detail: "tcx: "},
			}[hasTCX]},
		{"veth_xdp_taken_kernel", config.DatapathKernel, []string{vethIf}, true,
			map[bool]want{
				true:  {mode: loader.ModeKernel, reason: loader.ReasonConfigured, detail: "attached to rgk0 (tcx)"},
				false: {err: "datapath.mode is kernel, but the kernel datapath cannot load (not_supported)"},
			}[hasTCX]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("rg-guest-%d-%d", os.Getpid(), dirSeq.Add(1)))
			t.Cleanup(func() { os.RemoveAll(dir) })
			cfg := config.Datapath{
				Mode:       tc.mode,
				BPFFS:      dir,
				Interfaces: tc.ifaces,
				KernelRateLimit: config.KernelRateLimit{
					Rate: 10, Burst: 10, Ports: []string{"8080"}, MaxSources: 1024,
				},
			}
			var mode, reason, detail string
			var newErr error
			err := inNewNetns(func(veth netlink.Link) error {
				if tc.takeXDP {
					prog, err := xdpPass()
					if err != nil {
						return err
					}
					defer prog.Close()
					// A program attached the old way (netlink, no link), as
					// another tool would: the loader cannot replace it.
					if err := netlink.LinkSetXdpFdWithFlags(veth, prog.FD(), nl.XDP_FLAGS_DRV_MODE); err != nil {
						return fmt.Errorf("attach another XDP program: %w", err)
					}
				}
				dp, err := loader.New(cfg, nil, slog.New(slog.NewTextHandler(tWriter{t}, nil)))
				if err != nil {
					newErr = err
					return nil
				}
				mode, reason, detail = dp.Mode(), dp.Reason(), dp.Detail()
				return dp.Close()
			})
			if err != nil {
				t.Fatal(err)
			}
			if newErr != nil {
				fmt.Printf("RG-MODE %s error=%q\n", tc.name, newErr.Error())
			} else {
				fmt.Printf("RG-MODE %s mode=%s reason=%s detail=%q\n", tc.name, mode, reason, detail)
			}
			w := tc.want
			if w.err != "" {
				if newErr == nil || !strings.Contains(newErr.Error(), w.err) {
					t.Errorf("New = %v (mode %s, %s: %s), want an error containing %q", newErr, mode, reason, detail, w.err)
				}
				return
			}
			if newErr != nil {
				t.Fatalf("New: %v", newErr)
			}
			if mode != w.mode || reason != w.reason || !strings.Contains(detail, w.detail) {
				t.Errorf("mode %s, reason %s, detail %q; want %s, %s, detail containing %q", mode, reason, detail, w.mode, w.reason, w.detail)
			}
		})
	}
}

// tWriter logs through t.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// spliceSince is the first kernel where the loader's kernel splicing
// loads: its verdict program (bpf/splice.c) calls the kfunc
// bpf_cast_to_kern_ctx, which 6.2 brought. On 6.1 the program load
// fails with `kfunc "bpf_cast_to_kern_ctx": not supported`.
var spliceSince = version{6, 2}

// TestKernelSplicing checks kernel splicing (loader.Splicer) is available
// and passes its self-test exactly on the kernels that can run it, and that
// elsewhere the loader reports not_supported rather than failing otherwise.
// The loader's own splice tests skip where it is unavailable: this makes a
// kernel that should splice and does not fail the matrix.
func TestKernelSplicing(t *testing.T) {
	v := kernelUnderTest(t)
	want := v.atLeast(spliceSince)
	// In this namespace: the self-test's goroutines run on threads of
	// their own, which a namespace of the test's thread would not reach.
	s, err := loader.NewSplicer(slog.New(slog.NewTextHandler(tWriter{t}, nil)))
	if err == nil {
		err = s.SelfTest()
		if cerr := s.Close(); cerr != nil {
			t.Errorf("Close: %v", cerr)
		}
	}
	if err == nil {
		fmt.Printf("RG-MODE splice available self_test=pass\n")
	} else {
		fmt.Printf("RG-MODE splice error=%q\n", err.Error())
	}
	var serr *loader.SpliceError
	switch {
	case want && err != nil:
		t.Errorf("kernel splicing should work on %s (since %s): %v", v, spliceSince, err)
	case !want && err == nil:
		t.Errorf("kernel splicing works on %s, before %s: fix spliceSince", v, spliceSince)
	case !want && (!errors.As(err, &serr) || serr.Reason != loader.ReasonNotSupported):
		t.Errorf("on %s kernel splicing should be unavailable with reason %s, got: %v", v, loader.ReasonNotSupported, err)
	}
}
