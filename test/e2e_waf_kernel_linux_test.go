//go:build linux

package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// wafNet is a pair of network namespaces joined by a veth: the gateway
// and its backend in the server one, clients in the client one.
type wafNet struct {
	server, client string
	serverIP       string
	clients        []string
}

// requireKernelDatapath skips t unless it runs as root with bpffs
// mounted and the ip and nsenter tools at hand (nsenter enters only the
// network namespace: the gateway pins its maps in the host's bpffs,
// where `rustygate bpf status` reads them); with RUSTYGATE_REQUIRE_BPF=1 it fails
// instead, so a CI run cannot pass by skipping the kernel tests.
func requireKernelDatapath(t *testing.T) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "not running as root"
	} else if _, err := os.Stat("/sys/fs/bpf"); err != nil {
		reason = "no bpffs at /sys/fs/bpf"
	} else if _, err := exec.LookPath("ip"); err != nil {
		reason = "no ip command (iproute2)"
	} else if _, err := exec.LookPath("nsenter"); err != nil {
		reason = "no nsenter command (util-linux)"
	}
	if reason == "" {
		return
	}
	if os.Getenv("RUSTYGATE_REQUIRE_BPF") == "1" {
		t.Fatalf("RUSTYGATE_REQUIRE_BPF=1, but the kernel datapath test cannot run: %s", reason)
	}
	t.Skipf("needs the kernel datapath (root, bpffs) and network namespaces: %s", reason)
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newWAFNet makes the namespaces, deleted at cleanup.
func newWAFNet(t *testing.T) *wafNet {
	id := fmt.Sprintf("rgwaf%d", os.Getpid())
	n := &wafNet{server: id + "s", client: id + "c", serverIP: "10.78.0.1", clients: []string{"10.78.0.2", "10.78.0.3"}}
	for _, ns := range []string{n.server, n.client} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	ipCmd(t, "-n", n.server, "link", "add", "rgws0", "type", "veth", "peer", "name", "rgwc0", "netns", n.client)
	ipCmd(t, "-n", n.server, "addr", "add", n.serverIP+"/24", "dev", "rgws0")
	for _, c := range n.clients {
		ipCmd(t, "-n", n.client, "addr", "add", c+"/24", "dev", "rgwc0")
	}
	for _, ns := range []string{n.server, n.client} {
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", n.server, "link", "set", "rgws0", "up")
	ipCmd(t, "-n", n.client, "link", "set", "rgwc0", "up")
	return n
}

// inNS runs fn on a thread moved into the named namespace; sockets made
// there stay in it.
func inNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr != nil {
			// The thread stays locked and dies with the goroutine.
			errc <- errors.Join(err, serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// clientFrom is an HTTP client whose connections leave the client
// namespace from src, one connection per request.
func (n *wafNet) clientFrom(src string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = inNS(n.client, func() error {
			d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// TestWAFBansInKernel: a client whose requests the WAF refuses
// waf_blocks times is banned in the kernel: its SYNs are dropped at XDP
// (its connections time out), `rustygate bpf status` counts the dropped
// packets and /admin/bans lists it, while another client is served.
func TestWAFBansInKernel(t *testing.T) {
	requireKernelDatapath(t)
	n := newWAFNet(t)
	var ln net.Listener
	if err := inNS(n.server, func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	bpffs := filepath.Join("/sys/fs/bpf", fmt.Sprintf("rg-e2e-waf-%d", os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(bpffs) })
	g := startGatewayVia(t, "fast", fmt.Sprintf(`server: { listen: "%s:0" }
admin: { listen: "%s:0", token: "adm1n" }
log: { format: json, level: info, access: true }
datapath:
  mode: kernel
  bpffs: %q
  interfaces: [rgws0]
  bans: { waf_blocks: 3, waf_window: 60s, duration: 60s }
middlewares:
  - { name: waf }
routes:
  - path: "/"
    backend: "http://%s"
`, n.serverIP, n.serverIP, bpffs, ln.Addr()), "nsenter", "--net=/var/run/netns/"+n.server)
	if l := g.lines(); !strings.Contains(g.logs.String(), `"datapath":"kernel"`) {
		t.Fatalf("the gateway does not run the kernel datapath: %v", l)
	}
	attacker, bystander := n.clientFrom(n.clients[0]), n.clientFrom(n.clients[1])
	for i := range 3 {
		resp, err := attacker.Get(g.URL() + "/?id=1%27%20OR%20%271%27=%271")
		if err != nil {
			t.Fatalf("attack %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("attack %d: status %d, want 403", i, resp.StatusCode)
		}
	}
	waitLog(t, g, `"reason":"waf_blocks"`)
	if resp, err := attacker.Get(g.URL() + "/fine"); err == nil {
		resp.Body.Close()
		t.Fatalf("banned client still served: %d", resp.StatusCode)
	}
	resp, err := bystander.Get(g.URL() + "/fine")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("bystander: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", "http://"+adminAddr(t, g)+"/admin/bans", nil)
	req.Header.Set("Authorization", "Bearer adm1n")
	resp, err = bystander.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"ip": "`+n.clients[0]+`"`) {
		t.Fatalf("/admin/bans: %s", body)
	}
	out, err := exec.Command(gatewayBin, "bpf", "status", "--bpffs", bpffs).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mode:  kernel") || strings.Contains(string(out), "banned 0\n") || !strings.Contains(string(out), "banned ") {
		t.Fatalf("bpf status (%v):\n%s", err, out)
	}
	t.Logf("bpf status:\n%s", out)
}
