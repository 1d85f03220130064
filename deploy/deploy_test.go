// Package deploy_test checks the observability stack in deploy/: the
// compose file, the Prometheus configuration, the Grafana provisioning and
// the dashboard, whose queries may only use metrics the gateway defines.
package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// plannedMetrics are metrics the dashboard may use before the gateway
// defines them: the kernel datapath's drop counter.
var plannedMetrics = []string{}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeYAML(t *testing.T, path string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(string(readFile(t, path))))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		ExtraHosts  []string          `yaml:"extra_hosts"`
		DependsOn   []string          `yaml:"depends_on"`
	} `yaml:"services"`
}

// publishes reports whether a compose port list publishes container port
// p on the same host port.
func publishes(ports []string, p string) bool {
	for _, s := range ports {
		s, _, _ = strings.Cut(s, "/") // protocol
		if s == p+":"+p || strings.HasSuffix(s, ":"+p+":"+p) {
			return true
		}
	}
	return false
}

// mount returns the container path a compose volume list mounts the
// host path src at ("" when it does not), checking src exists.
func mount(t *testing.T, volumes []string, src string) string {
	t.Helper()
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && filepath.Clean(parts[0]) == filepath.Clean(src) {
			if _, err := os.Stat(src); err != nil {
				t.Errorf("volume %q: %v", v, err)
			}
			return parts[1]
		}
	}
	t.Errorf("no volume mounts %s (volumes %q)", src, volumes)
	return ""
}

func TestCompose(t *testing.T) {
	var c composeFile
	decodeYAML(t, "docker-compose.observability.yml", &c)

	j, ok := c.Services["jaeger"]
	if !ok || !strings.HasPrefix(j.Image, "jaegertracing/all-in-one:") {
		t.Fatalf("jaeger service missing or not all-in-one: %+v", j)
	}
	for _, p := range []string{"16686", "4317", "4318"} {
		if !publishes(j.Ports, p) {
			t.Errorf("jaeger does not publish %s (ports %q)", p, j.Ports)
		}
	}
	if j.Environment["COLLECTOR_OTLP_ENABLED"] != "true" {
		t.Errorf("jaeger environment %v lacks COLLECTOR_OTLP_ENABLED=true", j.Environment)
	}

	p, ok := c.Services["prometheus"]
	if !ok || !strings.HasPrefix(p.Image, "prom/prometheus:") {
		t.Fatalf("prometheus service missing: %+v", p)
	}
	if !publishes(p.Ports, "9090") {
		t.Errorf("prometheus does not publish 9090 (ports %q)", p.Ports)
	}
	if !slices.Contains(p.ExtraHosts, "host.docker.internal:host-gateway") {
		t.Errorf("prometheus extra_hosts %q lack host.docker.internal:host-gateway", p.ExtraHosts)
	}
	if got := mount(t, p.Volumes, "./prometheus/prometheus.yml"); got != "/etc/prometheus/prometheus.yml" {
		t.Errorf("prometheus config mounted at %q", got)
	}

	g, ok := c.Services["grafana"]
	if !ok || !strings.HasPrefix(g.Image, "grafana/grafana:") {
		t.Fatalf("grafana service missing: %+v", g)
	}
	if !publishes(g.Ports, "3000") {
		t.Errorf("grafana does not publish 3000 (ports %q)", g.Ports)
	}
	if got := mount(t, g.Volumes, "./grafana/provisioning"); got != "/etc/grafana/provisioning" {
		t.Errorf("grafana provisioning mounted at %q", got)
	}
	dashDir := mount(t, g.Volumes, "./grafana/dashboards")

	// The dashboard provider reads the mounted dashboards folder.
	var prov struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	decodeYAML(t, "grafana/provisioning/dashboards/dashboards.yml", &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path != dashDir {
		t.Errorf("dashboard providers %+v, want one file provider of %s", prov.Providers, dashDir)
	}

	// The data sources point at the compose services.
	for name, ds := range datasources(t) {
		want := map[string]string{"prometheus": "http://prometheus:9090", "jaeger": "http://jaeger:16686"}[name]
		if ds.URL != want {
			t.Errorf("data source %s url %q, want %q", name, ds.URL, want)
		}
	}
}

type datasource struct {
	Name string `yaml:"name"`
	UID  string `yaml:"uid"`
	Type string `yaml:"type"`
	URL  string `yaml:"url"`
}

// datasources returns the provisioned data sources by uid, checking
// there is one Prometheus and one Jaeger.
func datasources(t *testing.T) map[string]datasource {
	t.Helper()
	var f struct {
		Datasources []datasource `yaml:"datasources"`
	}
	decodeYAML(t, "grafana/provisioning/datasources/datasources.yml", &f)
	m := make(map[string]datasource)
	types := make(map[string]bool)
	for _, d := range f.Datasources {
		if d.UID == "" {
			t.Errorf("data source %s has no uid", d.Name)
		}
		m[d.UID] = d
		types[d.Type] = true
	}
	if !types["prometheus"] || !types["jaeger"] {
		t.Errorf("data sources %+v, want prometheus and jaeger", f.Datasources)
	}
	return m
}

func TestPrometheusScrapesAdmin(t *testing.T) {
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			Scheme        string `yaml:"scheme"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	decodeYAML(t, "prometheus/prometheus.yml", &cfg)
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				if !strings.HasSuffix(tg, ":8081") {
					continue
				}
				if tg != "host.docker.internal:8081" {
					t.Errorf("job %s scrapes %s, want host.docker.internal:8081", sc.JobName, tg)
				}
				if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
					t.Errorf("job %s metrics_path %q", sc.JobName, sc.MetricsPath)
				}
				if sc.Scheme != "" && sc.Scheme != "http" {
					t.Errorf("job %s scheme %q", sc.JobName, sc.Scheme)
				}
				return
			}
		}
	}
	t.Errorf("no scrape job targets the admin listener :8081: %+v", cfg.ScrapeConfigs)
}

// metricNameRE finds the Name fields of the metric options in the
// gateway's source.
var metricNameRE = regexp.MustCompile(`(?:\bName:\s*|NewDesc\()"([a-zA-Z_:][a-zA-Z0-9_:]*)"`)

// definedMetrics returns the series names the gateway exposes, read from
// the metric definitions in observe/metrics*.go and the rejection
// counters the middleware modules declare (l7/middleware/*/module.go):
// each name, plus the _bucket, _sum and _count series a histogram or
// summary adds.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../observe/metrics*.go")
	if err != nil {
		t.Fatal(err)
	}
	modules, err := filepath.Glob("../l7/middleware/*/module.go")
	if err != nil || len(modules) == 0 {
		t.Fatalf("no middleware modules found: %v", err)
	}
	files = append(files, modules...)
	names := make(map[string]bool)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		for _, m := range metricNameRE.FindAllSubmatch(readFile(t, f), -1) {
			n := string(m[1])
			for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
				names[n+suffix] = true
			}
		}
	}
	// Guard against a regexp that silently stopped matching.
	for _, n := range []string{"rustygate_requests_total", "rustygate_request_duration_seconds", "rustygate_backend_up"} {
		if !names[n] {
			t.Fatalf("metric %s not found in observe/metrics*.go (found %d names)", n, len(names))
		}
	}
	return names
}

// metricRefRE finds RustyGate metric names in a PromQL expression.
var metricRefRE = regexp.MustCompile(`\brustygate_[a-zA-Z0-9_:]*`)

type dashPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *dashDS        `json:"datasource"`
	Targets    []dashTarget   `json:"targets"`
	Panels     []dashPanel    `json:"panels"` // a collapsed row's panels
	GridPos    map[string]int `json:"gridPos"`
}

type dashDS struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashTarget struct {
	Expr       string  `json:"expr"`
	Datasource *dashDS `json:"datasource"`
}

type dashboard struct {
	UID        string      `json:"uid"`
	Title      string      `json:"title"`
	Panels     []dashPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string  `json:"name"`
			Datasource *dashDS `json:"datasource"`
			Definition string  `json:"definition"`
			Query      any     `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func TestDashboard(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(readFile(t, "grafana/dashboards/rustygate.json"), &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q", d.UID, d.Title)
	}
	known := definedMetrics(t)
	for _, n := range plannedMetrics {
		known[n] = true
	}
	ds := datasources(t)

	checkExpr := func(where, expr string) {
		refs := metricRefRE.FindAllString(expr, -1)
		if len(refs) == 0 {
			t.Errorf("%s: query %q uses no RustyGate metric", where, expr)
		}
		for _, r := range refs {
			if !known[r] {
				t.Errorf("%s: query %q uses %s, which neither observe/metrics*.go nor a middleware module defines", where, expr, r)
			}
		}
	}
	checkDS := func(where string, d *dashDS) {
		if d == nil {
			return
		}
		if _, ok := ds[d.UID]; !ok && !strings.HasPrefix(d.UID, "$") {
			t.Errorf("%s: data source uid %q is not provisioned", where, d.UID)
		}
	}

	var titles []string
	ids := make(map[int]bool)
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			titles = append(titles, p.Title)
			where := "panel " + p.Title
			checkDS(where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s has no query", where)
			}
			for _, tg := range p.Targets {
				checkDS(where, tg.Datasource)
				checkExpr(where, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		checkDS("variable "+v.Name, v.Datasource)
		q := v.Definition
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		} else if s, ok := v.Query.(string); ok {
			q = s
		}
		checkExpr("variable "+v.Name, q)
	}

	// The panels the operator relies on.
	want := []string{
		"request rate", "error rate", "latency p50", "latency p95", "latency p99",
		"backend health", "rate-limited", "retries", "backend failures", "in-flight", "kernel drops",
	}
	sort.Strings(titles)
	for _, w := range want {
		found := false
		for _, title := range titles {
			if strings.Contains(strings.ToLower(title), w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no panel titled like %q (panels %q)", w, titles)
		}
	}
}

// TestMetricRefs checks the checker: renamed and unknown metrics are caught.
func TestMetricRefs(t *testing.T) {
	known := definedMetrics(t)
	for expr, ok := range map[string]bool{
		`sum(rate(rustygate_requests_total[5m]))`:                                       true,
		`histogram_quantile(0.99, rate(rustygate_request_duration_seconds_bucket[1m]))`: true,
		`rate(rustygate_request_total[5m])`:                                             false,
		`rustygate_request_duration_seconds_total`:                                      false,
	} {
		all := true
		for _, r := range metricRefRE.FindAllString(expr, -1) {
			all = all && known[r]
		}
		if all != ok {
			t.Errorf("%q: known = %v, want %v", expr, all, ok)
		}
	}
}
