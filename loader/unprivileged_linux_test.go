//go:build linux

package loader

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rustygate/rustygate/config"
)

// unprivilegedEnv marks the child process of TestUnprivileged and names
// the bpffs directory it must not manage to create.
const unprivilegedEnv = "RUSTYGATE_TEST_UNPRIVILEGED_BPFFS"

// TestUnprivileged runs TestUnprivilegedChild as nobody, without
// capabilities: auto falls back to userspace (reason no_privileges) and
// still limits, kernel fails with a clear message, and nothing is left
// behind.
func TestUnprivileged(t *testing.T) {
	requireBPF(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop privileges: %v", err)
	}
	// The test binary sits in a directory only root can read: copy it.
	tmp, err := os.MkdirTemp("", "rustygate-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "loader.test")
	if err := copyFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}

	dir := bpffsDir(t)
	cmd := exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
		bin, "-test.run=^TestUnprivilegedChild$", "-test.v", "-test.count=1")
	cmd.Dir = tmp
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), unprivilegedEnv + "=" + dir}
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestUnprivilegedChild") {
		t.Fatalf("child: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the unprivileged child left %s (%v)", dir, err)
	}
}

func TestUnprivilegedChild(t *testing.T) {
	dir := os.Getenv(unprivilegedEnv)
	if dir == "" {
		t.Skip("runs only as the unprivileged child of TestUnprivileged")
	}
	if os.Geteuid() == 0 {
		t.Fatal("running as root")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	cfg := config.Datapath{
		Mode:            config.DatapathAuto,
		BPFFS:           dir,
		KernelRateLimit: config.KernelRateLimit{Rate: 1, Burst: 1, Ports: []string{config.PortsAuto}, MaxSources: 16},
	}

	dp, err := New(cfg, []int{port}, testLogger(t))
	if err != nil {
		t.Fatalf("auto: New: %v", err)
	}
	if dp.Mode() != ModeUserspace || dp.Reason() != ReasonNoPrivileges || !strings.Contains(dp.Detail(), "operation not permitted") {
		t.Errorf("auto: mode %q, reason %q, detail %q", dp.Mode(), dp.Reason(), dp.Detail())
	}
	// The fallback limits in the accept path.
	wrapped := dp.WrapListener(ln)
	go func() {
		for {
			c, err := wrapped.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi\n"))
			c.Close()
		}
	}()
	first := greeted(t, "127.0.0.1", port)
	second := greeted(t, "127.0.0.1", port)
	if !first || second {
		t.Errorf("burst 1: first connection greeted %v, second %v", first, second)
	}
	wrapped.Close()
	if err := dp.Close(); err != nil {
		t.Error(err)
	}

	cfg.Mode = config.DatapathKernel
	_, err = New(cfg, []int{port}, testLogger(t))
	want := "datapath.mode is kernel, but the kernel datapath cannot load (no_privileges): "
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "run as root, or grant CAP_BPF") {
		t.Errorf("kernel: New = %v, want %q...", err, want)
	}
	fmt.Println("kernel mode error:", err)
}

// greeted dials ip:port and reports whether the server's greeting came.
func greeted(t *testing.T, ip string, port int) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, fmt.Sprint(port)), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 3)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "hi\n"
}

func copyFile(from, to string, perm os.FileMode) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func TestFallbackReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("probe XDP programs: %w", unix.EPERM), ReasonNoPrivileges},
		{fmt.Errorf("bpffs: mkdir: %w", unix.EACCES), ReasonNoPrivileges},
		{fmt.Errorf("load: %w", unix.ENOSYS), ReasonNoBPFSyscall},
		{fmt.Errorf("probe LRUHash maps: %w", ebpf.ErrNotSupported), ReasonNotSupported},
		{fmt.Errorf("attach: %w", errors.Join(fmt.Errorf("xdp/native: %w", unix.EOPNOTSUPP), fmt.Errorf("tcx: %w", unix.EINVAL))), ReasonNotSupported},
		{errors.New("something else"), ReasonLoadFailed},
	}
	for _, tt := range tests {
		if got := fallbackReason(tt.err); got != tt.want {
			t.Errorf("fallbackReason(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}
