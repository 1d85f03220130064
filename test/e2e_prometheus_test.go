package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// prometheusPath is where the Debian prometheus package installs the server.
const prometheusPath = "/usr/bin/prometheus"

// TestPrometheusScrape runs a real Prometheus server scraping the admin
// /metrics of a gateway per engine, and checks through its query API that
// the requests sent through the gateways are counted under the right
// labels.
func TestPrometheusScrape(t *testing.T) {
	promBin := prometheusBinary(t)

	backend := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	const okCount, notFoundCount = 3, 2

	// instance (admin address) -> engine
	instances := make(map[string]string)
	for _, engine := range engines {
		g := startGateway(t, engine, fmt.Sprintf(`server:
  listen: %s
  %s
admin:
  listen: %s
log:
  format: json
  level: info
  access: false
routes:
  - name: api
    path: "/api/test"
    backend: %q
`, anyPort, engineYAML(engine), anyPort, backend.URL))
		admin := adminAddr(t, g)
		instances[admin] = engine

		c := newClient(t)
		for range okCount {
			if resp, body := get(t, c, g.URL()+"/api/test"); resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: /api/test status %d, body %q", engine, resp.StatusCode, body)
			}
		}
		for range notFoundCount {
			if resp, body := get(t, c, g.URL()+"/no/route"); resp.StatusCode != http.StatusNotFound {
				t.Fatalf("%s: /no/route status %d, body %q", engine, resp.StatusCode, body)
			}
		}
	}

	var targets []string
	for a := range instances {
		targets = append(targets, strconv.Quote(a))
	}
	const job = "rustygate-e2e"
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	promYAML := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: %s
    metrics_path: /metrics
    static_configs:
      - targets: [%s]
`, job, strings.Join(targets, ", "))
	if err := os.WriteFile(cfg, []byte(promYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := closedAddr(t)
	startPrometheus(t, promBin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr,
	)

	c := newClient(t)
	want := func(route, method, code string, v float64) string {
		return fmt.Sprintf("route=%s method=%s code=%s value=%g", route, method, code, v)
	}
	deadline := time.Now().Add(30 * time.Second)
	var lastUp, lastReq string
	for {
		up, errUp := promQuery(c, promAddr, fmt.Sprintf("up{job=%q}", job))
		reqs, errReq := promQuery(c, promAddr, "rustygate_requests_total")
		lastUp, lastReq = describe(up, errUp), describe(reqs, errReq)

		done := errUp == nil && errReq == nil
		for inst := range instances {
			if !done {
				break
			}
			if v, ok := sampleValue(up, map[string]string{"instance": inst}); !ok || v != 1 {
				done = false
				break
			}
			got := make(map[string]bool)
			for _, s := range reqs {
				if s.Metric["instance"] != inst || s.Metric["job"] != job {
					continue
				}
				v, _ := s.value()
				got[want(s.Metric["route"], s.Metric["method"], s.Metric["code"], v)] = true
			}
			for _, w := range []string{
				want("api", "GET", "200", okCount),
				want("none", "GET", "404", notFoundCount),
			} {
				if !got[w] {
					done = false
				}
			}
		}
		if done {
			for inst, engine := range instances {
				var n int
				for _, s := range reqs {
					if s.Metric["instance"] == inst {
						n++
					}
				}
				if n != 2 {
					t.Errorf("%s: %d rustygate_requests_total series, want 2: %s", engine, n, lastReq)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Say whether the gateways expose the series at all, which tells a
	// scrape problem from a counting one.
	for inst, engine := range instances {
		resp, body := get(t, c, "http://"+inst+"/metrics")
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "rustygate_requests_total{") {
			t.Errorf("%s: admin /metrics (status %d) has no rustygate_requests_total series; the proxy must record requests through observe.Metrics (Route(name).Start/Done)", engine, resp.StatusCode)
		}
	}
	t.Fatalf("Prometheus did not report the expected series within 30s;\nwant per instance %s and %s, with up == 1\nup: %s\nrustygate_requests_total: %s",
		want("api", "GET", "200", okCount), want("none", "GET", "404", notFoundCount), lastUp, lastReq)
}

// prometheusBinary returns the Prometheus server to run. The test skips
// without one unless CI is set, where the package is required (.ci/run
// installs it).
func prometheusBinary(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(prometheusPath); err == nil {
		return prometheusPath
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found and CI is set: the prometheus package is required (apt-get install prometheus)", prometheusPath)
	}
	t.Skipf("%s not found (apt-get install prometheus); set CI=true to make this a failure", prometheusPath)
	return ""
}

// startPrometheus starts the Prometheus server with args; at cleanup it
// is stopped with SIGTERM and killed after 5 s.
func startPrometheus(t *testing.T, bin string, args ...string) {
	t.Helper()
	logs := &logBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				t.Errorf("prometheus did not stop within 5s of SIGTERM; killing it")
				cmd.Process.Kill()
				<-exited
			}
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
}

// promSample is one element of an instant-vector query result.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix time, "value"]
}

func (s promSample) value() (float64, bool) {
	str, ok := s.Value[1].(string)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(str, 64)
	return v, err == nil
}

// promQuery runs an instant query against the Prometheus HTTP API.
func promQuery(c *http.Client, addr, query string) ([]promSample, error) {
	resp, err := c.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("status %d, body %q: %v", resp.StatusCode, body, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", query, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %q", query, r.Data.ResultType)
	}
	return r.Data.Result, nil
}

// sampleValue returns the value of the one sample whose labels include
// match.
func sampleValue(samples []promSample, match map[string]string) (float64, bool) {
	var found []promSample
next:
	for _, s := range samples {
		for k, v := range match {
			if s.Metric[k] != v {
				continue next
			}
		}
		found = append(found, s)
	}
	if len(found) != 1 {
		return 0, false
	}
	return found[0].value()
}

func describe(samples []promSample, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	if len(samples) == 0 {
		return "no series"
	}
	var b strings.Builder
	for _, s := range samples {
		v, _ := s.value()
		fmt.Fprintf(&b, "\n  %v = %g", s.Metric, v)
	}
	return b.String()
}

// adminAddr returns the address the gateway's admin listener is bound to.
// The startup line gives the configured address; with port 0 the real one
// is looked up among the process's listening sockets.
func adminAddr(t *testing.T, g *gateway) string {
	t.Helper()
	for _, l := range g.lines() {
		if l["msg"] != "RustyGate started" {
			continue
		}
		if a, _ := l["admin"].(string); a != "" && !strings.HasSuffix(a, ":0") && !strings.HasPrefix(a, ":") {
			return a
		}
	}
	ports, err := listeningPorts(g.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("finding the admin listener: %v", err)
	}
	_, proxyPort, _ := strings.Cut(g.addr, ":")
	var admin []string
	for _, p := range ports {
		if strconv.Itoa(p) != proxyPort {
			admin = append(admin, "127.0.0.1:"+strconv.Itoa(p))
		}
	}
	if len(admin) != 1 {
		t.Fatalf("want exactly one listener besides the proxy's %s, found ports %v", g.addr, ports)
	}
	return admin[0]
}

// listeningPorts returns the ports of the IPv4 TCP sockets process pid
// listens on, read from /proc.
func listeningPorts(pid int) ([]int, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := make(map[string]bool)
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, err
	}
	const listenState = "0A"
	var ports []int
	for i, line := range strings.Split(string(table), "\n") {
		f := strings.Fields(line)
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if i == 0 || len(f) < 10 || f[3] != listenState || !inodes[f[9]] {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("bad local address %q in /proc/%d/net/tcp", f[1], pid)
		}
		ports = append(ports, int(p))
	}
	return ports, nil
}
