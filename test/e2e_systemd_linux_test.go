package e2e_test

// The system calls the gateway makes, traced with strace while it serves,
// reloads and drains, against the SystemCallFilter= of the systemd unit
// (deploy/systemd): a call the filter denies would fail with EPERM in
// production and nowhere else.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// syscallGroups parses `systemd-analyze syscall-filter`: the calls of each
// @group, nested groups expanded.
func syscallGroups(t *testing.T) func(string) map[string]bool {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := map[string][]string{}
	cur := ""
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "@"):
			cur = strings.Fields(line)[0]
		case cur != "" && f != "" && !strings.HasPrefix(f, "#"):
			groups[cur] = append(groups[cur], f)
		}
	}
	var expand func(string) map[string]bool
	expand = func(name string) map[string]bool {
		if !strings.HasPrefix(name, "@") {
			return map[string]bool{name: true}
		}
		set := map[string]bool{}
		for _, e := range groups[name] {
			for c := range expand(e) {
				set[c] = true
			}
		}
		return set
	}
	return expand
}

// unitFilter applies the SystemCallFilter= lines of the unit files in
// order (an allow list, then removals and additions), as systemd does.
func unitFilter(t *testing.T, expand func(string) map[string]bool, files ...string) map[string]bool {
	t.Helper()
	allowed := map[string]bool{}
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^SystemCallFilter=(.*)$`).FindAllStringSubmatch(string(src), -1) {
			list, deny := strings.CutPrefix(strings.TrimSpace(m[1]), "~")
			for _, name := range strings.Fields(list) {
				for c := range expand(name) {
					if deny {
						delete(allowed, c)
					} else {
						allowed[c] = true
					}
				}
			}
		}
	}
	return allowed
}

// tracedGateway runs the gateway under strace on yaml, exercises it
// (HTTP/1.1, h2c, the admin endpoints, a SIGHUP and a file reload, a
// drain) and returns the system calls it made.
func tracedGateway(t *testing.T, yaml string) []string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	trace, logPath := filepath.Join(dir, "strace.out"), filepath.Join(dir, "gateway.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("strace", "-f", "-qq", "-o", trace, gatewayBin, "run", "-c", cfg)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p := &hrProc{t: t, logPath: logPath}
	t.Cleanup(func() {
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", p.logs())
		}
	})
	start := p.waitLine(t, 0, 20*time.Second, "RustyGate started", func(l map[string]any) bool { return l["msg"] == "RustyGate started" })
	p.addr, p.admin = start["listen"].(string), start["admin"].(string)
	pid := hrInt(start["pid"])

	c := newClient(t)
	hrExpect(t, c, p.url()+"/api/x", 200, "")
	h2 := &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}, Timeout: 10 * time.Second}
	if resp, err := h2.Get(p.url() + "/api/h2"); err != nil || resp.ProtoMajor != 2 {
		t.Errorf("h2c request: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	h2.CloseIdleConnections()
	checkAdmin(t, c, p.admin, []adminCase{{"/metrics", "", 200}, {"/readyz", "", 200}})
	from := p.lineCount()
	syscall.Kill(pid, syscall.SIGHUP)
	p.waitLine(t, from, 10*time.Second, "the SIGHUP reload", hrIsReload("SIGHUP"))
	from = p.lineCount()
	hrWrite(t, cfg, yaml+"# saved again\n")
	p.waitLine(t, from, 10*time.Second, "the file reload", hrIsReload("file"))
	c.CloseIdleConnections()
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
		exited <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("the traced gateway did not exit within 15s of SIGTERM")
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\d+\s+([a-z_0-9]+)\(`).FindAllSubmatch(data, -1) {
		seen[string(m[1])] = true
	}
	if !seen["epoll_pwait"] && !seen["epoll_wait"] {
		t.Fatalf("the trace lacks epoll waits: strace saw little of the gateway (%d calls)", len(seen))
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
}

func h2cOnly() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// TestSystemdSyscallFilter: every system call the gateway makes is allowed
// by the unit's SystemCallFilter=, except bpf(2) in the userspace unit (the
// datapath's probe takes EPERM as "no privileges"); with the
// kernel-datapath drop-in, every call of a kernel-datapath run is allowed.
func TestSystemdSyscallFilter(t *testing.T) {
	for _, tool := range []string{"strace", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (Debian packages strace and systemd); CI must run this test", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	expand := syscallGroups(t)
	be := hrPathBackend(t, "be")
	base := func(engine string) string {
		return fmt.Sprintf("server:\n  listen: \"127.0.0.1:0\"\n  %s\nadmin:\n  listen: \"127.0.0.1:0\"\nlog:\n  access: true\n"+
			"routes:\n  - path: /api\n    backend: %q\n", engineYAML(engine), be)
	}

	t.Run("userspace", func(t *testing.T) {
		allowed := unitFilter(t, expand, "deploy/systemd/rustygate.service")
		for _, engine := range engines {
			used := tracedGateway(t, base(engine)+"datapath:\n  mode: userspace\n")
			var denied []string
			for _, s := range used {
				if !allowed[s] && s != "bpf" {
					denied = append(denied, s)
				}
			}
			if len(denied) > 0 {
				t.Errorf("engine %s: the unit's SystemCallFilter= denies %v, which the gateway calls", engine, denied)
			}
			t.Logf("engine %s: %d distinct system calls, all allowed", engine, len(used))
		}
	})

	t.Run("kernel-datapath", func(t *testing.T) {
		var fs unix.Statfs_t
		if os.Geteuid() != 0 || unix.Statfs("/sys/fs/bpf", &fs) != nil || fs.Type != unix.BPF_FS_MAGIC {
			if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" {
				t.Fatal("RUSTYGATE_REQUIRE_BPF=1, but the kernel datapath needs root and bpffs at /sys/fs/bpf")
			}
			t.Skip("the kernel datapath needs root and bpffs at /sys/fs/bpf")
		}
		allowed := unitFilter(t, expand, "deploy/systemd/rustygate.service", "deploy/systemd/rustygate.service.d/kernel-datapath.conf")
		bpffs := fmt.Sprintf("/sys/fs/bpf/rg-e2e-syscalls-%d", os.Getpid())
		t.Cleanup(func() { os.RemoveAll(bpffs) })
		used := tracedGateway(t, base("fast")+fmt.Sprintf("datapath:\n  mode: kernel\n  interfaces: [lo]\n  bpffs: %q\n", bpffs))
		var denied []string
		for _, s := range used {
			if !allowed[s] {
				denied = append(denied, s)
			}
		}
		if !slices.Contains(used, "bpf") {
			t.Errorf("a kernel-datapath run made no bpf(2) call: %v", used)
		}
		if len(denied) > 0 {
			t.Errorf("the unit with kernel-datapath.conf denies %v, which the gateway calls", denied)
		}
	})
}
