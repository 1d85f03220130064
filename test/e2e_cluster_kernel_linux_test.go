//go:build linux

package e2e_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rustygate/rustygate/internal/testredis"
)

// TestClusterBansInKernel: two gateways on two links of one namespace,
// each with the kernel datapath on its own interface, share a Redis. A
// ban made through node A is in node B's kernel ban map within a second
// (B drops the client's SYNs at XDP), and lifting it through B lifts it
// in A's map.
func TestClusterBansInKernel(t *testing.T) {
	requireKernelDatapath(t)
	id := fmt.Sprintf("rgcl%d", os.Getpid())
	n := &wafNet{server: id + "s", client: id + "c"}
	for _, ns := range []string{n.server, n.client} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	for i, sub := range []string{"10.81.0", "10.82.0"} {
		s, c := fmt.Sprintf("rgcs%d", i), fmt.Sprintf("rgcc%d", i)
		ipCmd(t, "-n", n.server, "link", "add", s, "type", "veth", "peer", "name", c, "netns", n.client)
		ipCmd(t, "-n", n.server, "addr", "add", sub+".1/24", "dev", s)
		ipCmd(t, "-n", n.client, "addr", "add", sub+".2/24", "dev", c)
		ipCmd(t, "-n", n.client, "addr", "add", sub+".3/24", "dev", c)
		ipCmd(t, "-n", n.server, "link", "set", s, "up")
		ipCmd(t, "-n", n.client, "link", "set", c, "up")
	}
	enter := []string{"nsenter", "--net=/var/run/netns/" + n.server}
	r := testredis.StartVia(t, 16379, enter...)
	var ln net.Listener
	if err := inNS(n.server, func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	node := func(name, ip, iface string) clusterNode {
		bpffs := filepath.Join("/sys/fs/bpf", fmt.Sprintf("rg-e2e-cluster-%s-%d", name, os.Getpid()))
		t.Cleanup(func() { os.RemoveAll(bpffs) })
		g := startGatewayVia(t, "fast", fmt.Sprintf(`server: { listen: "%s:0" }
admin: { listen: "%s:0", token: "adm1n" }
log: { format: json, level: info, access: false }
datapath: { mode: kernel, bpffs: %q, interfaces: [%s], bans: { duration: 60s } }
cluster: { node_name: %s, redis: { addrs: ["127.0.0.1:%d"], timeout: 1s } }
routes:
  - { path: "/", backend: "http://%s" }
`, ip, ip, bpffs, iface, name, r.Port, ln.Addr()), enter...)
		if !strings.Contains(g.logs.String(), `"datapath":"kernel"`) {
			t.Fatalf("node %s does not run the kernel datapath:\n%s", name, g.logs.String())
		}
		return clusterNode{g, adminAddr(t, g)}
	}
	a, b := node("a", "10.81.0.1", "rgcs0"), node("b", "10.82.0.1", "rgcs1")
	admin := func(nd clusterNode, via, method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+nd.admin+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer adm1n")
		resp, err := n.clientFrom(via).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	served := func(nd clusterNode, src string) bool {
		c := n.clientFrom(src)
		c.Timeout = 300 * time.Millisecond
		resp, err := c.Get(nd.URL() + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	if !served(b, "10.82.0.2") {
		t.Fatal("the client is not served before the ban")
	}
	if code, body := admin(a, "10.81.0.3", "POST", "/admin/bans", `{"ip": "10.82.0.2"}`); code != 201 {
		t.Fatalf("POST /admin/bans on a: %d %s", code, body)
	}
	waitAll(t, time.Second, "ban in b's kernel map", func() bool {
		_, body := admin(b, "10.82.0.3", "GET", "/admin/bans", "")
		return strings.Contains(body, `"10.82.0.2"`)
	})
	if served(b, "10.82.0.2") {
		t.Error("b still serves the client banned through a")
	}
	out, err := exec.Command(gatewayBin, "bpf", "status", "--bpffs", filepath.Join("/sys/fs/bpf", fmt.Sprintf("rg-e2e-cluster-b-%d", os.Getpid()))).CombinedOutput()
	if err != nil || strings.Contains(string(out), "banned 0\n") {
		t.Errorf("b's bpf status counts no banned packet (%v):\n%s", err, out)
	}
	if code, body := admin(b, "10.82.0.3", "DELETE", "/admin/bans/10.82.0.2", ""); code != 204 {
		t.Fatalf("DELETE on b: %d %s", code, body)
	}
	waitAll(t, time.Second, "lifted in a's kernel map", func() bool {
		_, body := admin(a, "10.81.0.3", "GET", "/admin/bans", "")
		return !strings.Contains(body, `"10.82.0.2"`)
	})
	if !served(b, "10.82.0.2") {
		t.Error("b does not serve the client after the ban was lifted")
	}
}
