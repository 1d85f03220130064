//go:build linux

package loader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// requireSplice skips t unless this kernel can splice sockets (sk_skb
// programs on a SOCKHASH, as root); RUSTYGATE_REQUIRE_BPF=1 fails instead.
func requireSplice(t testing.TB) *Splicer {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "not running as root"
	} else if err := features.HaveProgramType(ebpf.SkSKB); err != nil {
		reason = err.Error()
	}
	var s *Splicer
	if reason == "" {
		var err error
		if s, err = NewSplicer(nil); err != nil {
			reason = err.Error()
		}
	}
	if reason != "" {
		if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" && !kernelBefore(6, 2) {
			t.Fatalf("RUSTYGATE_REQUIRE_BPF=1, but kernel splicing cannot run: %s", reason)
		}
		t.Skipf("needs sk_skb programs and SOCKHASH maps (root): %s", reason)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// kernelBefore reports whether the running kernel is older than
// major.minor. Kernel splicing needs 6.2 (bpf_cast_to_kern_ctx, for the
// verdict's sequence-number guard): older kernels report not_supported.
func kernelBefore(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi)
	return ma < major || ma == major && mi < minor
}

func TestSpliceSelfTest(t *testing.T) {
	s := requireSplice(t)
	if err := s.SelfTest(); err != nil {
		t.Fatal(err)
	}
	if !s.SelfTestPassed() {
		t.Fatal("SelfTestPassed is false after a passing SelfTest")
	}
	st := s.Stats()
	if st.Connections == 0 || st.RedirectedBytes < 8<<20 || st.IntegrityFailures != 0 {
		t.Fatalf("stats after the self-test: %+v", st)
	}
	t.Logf("stats: %+v", st)
}

// TestSpliceFallsBackOnMPTCP: the kernel refuses MPTCP sockets; Splice
// says so and moves nothing, so the caller can use splice(2).
func TestSpliceFallsBackOnMPTCP(t *testing.T) {
	s := requireSplice(t)
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no MPTCP listener: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	var d net.Dialer
	d.SetMultipathTCP(true)
	c1, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c1.Close() })
	s1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s1.Close() })
	if mp, _ := s1.(*net.TCPConn).MultipathTCP(); !mp {
		t.Skip("MPTCP was not negotiated (net.mptcp.enabled=0?)")
	}
	_, handled, err := s.Splice(s1.(*net.TCPConn), c1.(*net.TCPConn))
	if handled || err != nil {
		t.Fatalf("Splice of MPTCP sockets: handled %v, err %v; want a fallback", handled, err)
	}
	if st := s.Stats(); st.Fallbacks != 1 {
		t.Fatalf("fallbacks %d, want 1", st.Fallbacks)
	}
	// The sockets still work in userspace.
	c1.Write([]byte("x"))
	buf := make([]byte, 1)
	s1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s1.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("after the fallback: %q %v", buf, err)
	}
}

// TestSpliceFallsBackAfterClientFIN: a client that already sent FIN
// cannot be inserted; the bytes it sent are still there for splice(2).
func TestSpliceFallsBackAfterClientFIN(t *testing.T) {
	s := requireSplice(t)
	r, err := newSpliceRig(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.close() })
	for i := range 20 {
		if err := checkUpload(r.addr(), uint64(i*31), uint64(i), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if errs := r.close(); len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	t.Logf("handled %d, fell back %d, stats %+v", r.handled, r.fallback, s.Stats())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestSpliceIntegritySoak pushes checksummed transfers of 16-64 MiB both
// ways (echo, upload, download), short connections and abrupt resets
// through kernel splicing. The bar is zero corrupted, truncated or hung
// transfers. Short by default; the full soak:
//
//	RUSTYGATE_SPLICE_SOAK=1 go test -p 1 -run TestSpliceIntegritySoak -v -timeout 60m ./loader/
//	(RUSTYGATE_SPLICE_TRANSFERS, _SHORT, _RESETS override the counts,
//	RUSTYGATE_SPLICE_SIZE_MIB fixes the transfer size, _DUPLEX the number
//	of full-duplex echoes)
func TestSpliceIntegritySoak(t *testing.T) {
	s := requireSplice(t)
	transfers, short, resets, duplex, duplexFor := 6, 100, 50, 2, time.Second
	if os.Getenv("RUSTYGATE_SPLICE_SOAK") == "1" {
		transfers, short, resets, duplex, duplexFor = 60, 1000, 300, 20, 2*time.Second
	}
	duplex = envInt("RUSTYGATE_SPLICE_DUPLEX", duplex)
	sizeMiB := 0
	if os.Getenv("RUSTYGATE_KERNEL") != "" {
		// The kernel matrix runs under software emulation (~1 MiB/s).
		transfers, short, resets, sizeMiB, duplex = 3, 30, 10, 2, 1
	}
	sizeMiB = envInt("RUSTYGATE_SPLICE_SIZE_MIB", sizeMiB)
	transfers = envInt("RUSTYGATE_SPLICE_TRANSFERS", transfers)
	short = envInt("RUSTYGATE_SPLICE_SHORT", short)
	resets = envInt("RUSTYGATE_SPLICE_RESETS", resets)
	r, err := newSpliceRig(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.close() })

	var failed, bytesMoved atomic.Int64
	var mu sync.Mutex
	var failures []string
	report := func(what string, err error) {
		if err != nil {
			failed.Add(1)
			mu.Lock()
			failures = append(failures, what+": "+err.Error())
			mu.Unlock()
		}
	}
	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
				n := uint64(16<<20 + rng.IntN(48<<20+1))
				if sizeMiB > 0 {
					n = uint64(sizeMiB) << 20
				}
				seed := rng.Uint64()
				timeout := 30*time.Second + time.Duration(n/(2<<20))*time.Second
				var err error
				switch i % 3 {
				case 0:
					err = checkEcho(r.addr(), n, seed, timeout)
					bytesMoved.Add(int64(2 * n))
				case 1:
					err = checkUpload(r.addr(), n, seed, timeout)
					bytesMoved.Add(int64(n))
				case 2:
					err = checkDownload(r.addr(), n, seed, timeout)
					bytesMoved.Add(int64(n))
				}
				report(fmt.Sprintf("transfer %d (%d bytes)", i, n), err)
			}
		}()
	}
	for i := range transfers {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	bulk := time.Since(start)

	// Full-duplex bulk echo with large writes: the load under which this
	// kernel hands the verdict skbs whose head it already sent (Overlaps).
	for i := range duplex {
		report(fmt.Sprintf("duplex echo %d", i), checkDuplex(r.addr(), duplexFor))
	}
	for i := range short {
		report(fmt.Sprintf("short %d", i), checkShort(r.addr(), uint64(1+i%200), uint64(i), 10*time.Second))
	}
	for i := range resets {
		report(fmt.Sprintf("reset %d", i), checkReset(r.addr(), i))
	}
	// Still serving after the resets.
	final := uint64(64 << 20)
	if sizeMiB > 0 {
		final = uint64(sizeMiB) << 20
	}
	report("final echo", checkEcho(r.addr(), final, 99, 2*time.Minute))
	if errs := r.close(); len(errs) > 0 {
		for _, e := range errs {
			// Resets make Splice report the reset: that is expected.
			if !isResetError(e) {
				report("proxy", e)
			}
		}
	}
	st := s.Stats()
	r.mu.Lock()
	t.Logf("proxy: %d connections spliced in the kernel, %d fell back to splice(2)", r.handled, r.fallback)
	r.mu.Unlock()
	t.Logf("soak: %d transfers (%.1f MiB in %s), %d duplex echoes, %d short, %d resets, %d failures; kernel: %d spliced, %d fallbacks, %d bytes redirected, %d overlaps trimmed (%d duplicate bytes dropped), %d integrity failures",
		transfers, float64(bytesMoved.Load())/(1<<20), bulk.Round(time.Millisecond), duplex, short, resets, failed.Load(),
		st.Connections, st.Fallbacks, st.RedirectedBytes, st.Overlaps, st.DuplicateBytes, st.IntegrityFailures)
	for _, f := range failures {
		t.Error(f)
	}
	if st.IntegrityFailures != 0 {
		t.Errorf("%d integrity failures", st.IntegrityFailures)
	}
}

func isResetError(err error) bool {
	return err != nil && (errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) ||
		errors.Is(err, ErrSpliceAborted) || containsAny(err.Error(), "reset", "half-close", "peer failed", "FIN not seen"))
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		for i := 0; i+len(x) <= len(s); i++ {
			if s[i:i+len(x)] == x {
				return true
			}
		}
	}
	return false
}

// checkReset starts a transfer and resets the client partway: the proxy
// must end both sides (the backend sees the connection end) and go on.
func checkReset(addr string, i int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(i), 5))
	c.Write([]byte{'e'})
	n := uint64(rng.IntN(4 << 20))
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	writeStream(c, n, uint64(i), rng)
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	<-done
	return nil
}

const spliceUnprivilegedEnv = "RUSTYGATE_TEST_SPLICE_UNPRIVILEGED"

// TestSpliceUnprivileged runs TestSpliceUnprivilegedChild as nobody:
// NewSplicer and NewSteering fail with reason no_privileges.
func TestSpliceUnprivileged(t *testing.T) {
	requireSplice(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop privileges: %v", err)
	}
	tmp, err := os.MkdirTemp("", "rustygate-splice-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	os.Chmod(tmp, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "loader.test")
	if err := copyFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
		bin, "-test.run=^TestSpliceUnprivilegedChild$", "-test.v", "-test.count=1")
	cmd.Dir = tmp
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), spliceUnprivilegedEnv + "=1"}
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSpliceUnprivilegedChild") {
		t.Fatalf("child: %v", err)
	}
}

func TestSpliceUnprivilegedChild(t *testing.T) {
	if os.Getenv(spliceUnprivilegedEnv) == "" {
		t.Skip("runs only as the unprivileged child of TestSpliceUnprivileged")
	}
	_, err := NewSplicer(nil)
	var serr *SpliceError
	if !errors.As(err, &serr) || serr.Reason != ReasonNoPrivileges {
		t.Errorf("NewSplicer as nobody: %v, want reason %s", err, ReasonNoPrivileges)
	}
	_, err = NewSteering(filepath.Join(bpffsRoot, "rg-unprivileged-steer"), netip.MustParsePrefix("127.0.0.1/32"), 9000, 9001, nil)
	if !errors.As(err, &serr) || serr.Reason != ReasonNoPrivileges {
		t.Errorf("NewSteering as nobody: %v, want reason %s", err, ReasonNoPrivileges)
	}
}

// checkDuplex writes 256 KiB blocks of a known stream for d while reading
// the echo, half-closes, and checks that exactly what was sent came back.
func checkDuplex(addr string, d time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d + time.Minute))
	seed := rand.Uint64()
	c.Write([]byte{'e'})
	start := time.Now()
	var sent uint64
	werr := make(chan error, 1)
	go func() {
		src := newStream(seed)
		buf := make([]byte, 256<<10)
		for time.Since(start) < d {
			src.Read(buf)
			n, err := c.Write(buf)
			sent += uint64(n)
			if err != nil {
				werr <- err
				return
			}
		}
		werr <- c.(*net.TCPConn).CloseWrite()
	}()
	h := sha256.New()
	got, rerr := io.Copy(h, c)
	if err := errors.Join(<-werr, rerr); err != nil {
		return fmt.Errorf("duplex echo: %w (sent %d, got %d)", err, sent, got)
	}
	if uint64(got) != sent || !bytes.Equal(h.Sum(nil), sumSlice(streamSum(sent, seed))) {
		return fmt.Errorf("duplex echo: sent %d bytes, got %d, checksum differs", sent, got)
	}
	return nil
}
