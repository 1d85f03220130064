package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// pooled returns a route with every pool default applied, as a file
// setting nothing would give.
func pooled() Route {
	r := Route{Path: "/a", Backend: "http://a", Strategy: StrategyRoundRobin}
	upstreamDefaults(&r, "routes[0]", func(string) bool { return true })
	return r
}

func TestUpstreamDefaults(t *testing.T) {
	r := pooled()
	wantOutlier := Outlier{Consecutive: 5, BaseEjection: Duration(30 * time.Second), MaxEjection: Duration(300 * time.Second), Statuses: []int{502, 503, 504}}
	if !reflect.DeepEqual(r.Outlier, wantOutlier) {
		t.Errorf("outlier = %+v", r.Outlier)
	}
	rt := r.Retries
	if *rt.Attempts != 2 || *rt.Budget != 0.2 || rt.MaxBodyBytes != 65536 || rt.NonIdempotent ||
		!reflect.DeepEqual(rt.On, []string{"connect_failure", "reset"}) {
		t.Errorf("retries = %+v (attempts %d, budget %g)", rt, *rt.Attempts, *rt.Budget)
	}
	// Health checks stay off without a path; no hash key without
	// consistent_hash; no wait without a limit.
	if !reflect.DeepEqual(r.HealthCheck, HealthCheck{}) || r.HashKey != "" || r.MaxConnsWait != 0 {
		t.Errorf("route = %+v", r)
	}

	r = Route{Strategy: StrategyConsistentHash, HealthCheck: HealthCheck{Path: "/health"}, MaxConns: 10}
	upstreamDefaults(&r, "routes[0]", func(string) bool { return true })
	wantHealth := HealthCheck{Path: "/health", Interval: Duration(5 * time.Second), Timeout: Duration(2 * time.Second), HealthyThreshold: 2, UnhealthyThreshold: 2, ExpectStatus: []string{"2xx", "3xx"}}
	if !reflect.DeepEqual(r.HealthCheck, wantHealth) || r.HashKey != "ip" || r.MaxConnsWait != Duration(time.Second) {
		t.Errorf("route = %+v", r)
	}

	// Idempotent, and defaults are not shared between routes.
	before := r
	before.HealthCheck.ExpectStatus = append([]string(nil), r.HealthCheck.ExpectStatus...)
	upstreamDefaults(&r, "routes[0]", func(string) bool { return true })
	if !reflect.DeepEqual(r, before) {
		t.Errorf("not idempotent: %+v", r)
	}
	other := pooled()
	other.Outlier.Statuses[0] = 500
	other.Retries.On[0] = "500"
	if again := pooled(); again.Outlier.Statuses[0] != 502 || again.Retries.On[0] != "connect_failure" {
		t.Error("default lists are shared")
	}
}

func TestUpstreamParse(t *testing.T) {
	c, err := Parse("good.yaml", src(`
routes:
	- path: /a
		backend: http://a
		health_check:
			path: /healthz
			interval: 10s
			expect_status: [200, "3xx"]
		outlier_detection:
			consecutive_failures: 0
			statuses: []
		retries:
			attempts: 0
			on: []
			max_body_bytes: 0
		max_conns: 100
		max_conns_wait: 0
		fail_open: true
	- path: /b
		backend: http://b
		max_conns: 5
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	// Explicit zeros and empty lists are kept: they turn things off.
	wantHealth := HealthCheck{Path: "/healthz", Interval: Duration(10 * time.Second), Timeout: Duration(2 * time.Second), HealthyThreshold: 2, UnhealthyThreshold: 2, ExpectStatus: []string{"200", "3xx"}}
	if !reflect.DeepEqual(r.HealthCheck, wantHealth) {
		t.Errorf("health = %+v", r.HealthCheck)
	}
	if o := r.Outlier; o.Consecutive != 0 || len(o.Statuses) != 0 || o.BaseEjection != Duration(30*time.Second) {
		t.Errorf("outlier = %+v", o)
	}
	if rt := r.Retries; *rt.Attempts != 0 || len(rt.On) != 0 || rt.MaxBodyBytes != 0 || *rt.Budget != 0.2 {
		t.Errorf("retries = %+v", rt)
	}
	if r.MaxConns != 100 || r.MaxConnsWait != 0 || !r.FailOpen {
		t.Errorf("route = %+v", r)
	}
	if r := c.Routes[1]; r.MaxConnsWait != Duration(time.Second) {
		t.Errorf("max_conns_wait = %s, want the default 1s", r.MaxConnsWait)
	}
}

func TestUpstreamParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "health check",
			yaml: route + `		health_check:
			path: health
			interval: 1s
			timeout: 1s
			healthy_threshold: 0
			unhealthy_threshold: 101
			expect_status: ["2xx", "600", "6xx", "20", "ok"]
`,
			want: []string{
				`bad.yaml:5: routes[0].health_check.path: must start with "/" (got "health")`,
				`bad.yaml:7: routes[0].health_check.timeout: must be less than interval (1s) (got 1s)`,
				`bad.yaml:8: routes[0].health_check.healthy_threshold: must be between 1 and 100 (got 0)`,
				`bad.yaml:9: routes[0].health_check.unhealthy_threshold: must be between 1 and 100 (got 101)`,
				`bad.yaml:10: routes[0].health_check.expect_status[1]: invalid status "600" (want a code 100-599 or a class 1xx-5xx)`,
				`bad.yaml:10: routes[0].health_check.expect_status[2]: invalid status "6xx" (want a code 100-599 or a class 1xx-5xx)`,
				`bad.yaml:10: routes[0].health_check.expect_status[3]: invalid status "20" (want a code 100-599 or a class 1xx-5xx)`,
				`bad.yaml:10: routes[0].health_check.expect_status[4]: invalid status "ok" (want a code 100-599 or a class 1xx-5xx)`,
			},
		},
		{
			name: "health check zero durations and empty statuses",
			yaml: route + "\t\thealth_check: {path: /h, interval: 0, timeout: 0, expect_status: []}\n",
			want: []string{
				`bad.yaml:4: routes[0].health_check.interval: must be greater than 0 (got 0s)`,
				`bad.yaml:4: routes[0].health_check.timeout: must be greater than 0 (got 0s)`,
				`bad.yaml:4: routes[0].health_check.expect_status: must not be empty`,
			},
		},
		{
			name: "health check path with a space",
			yaml: route + "\t\thealth_check: {path: \"/a b\"}\n",
			want: []string{`bad.yaml:4: routes[0].health_check.path: invalid path "/a b" (no spaces, control characters or "#")`},
		},
		{
			name: "protocol",
			yaml: route + "\t\tprotocol: h3\n",
			want: []string{`bad.yaml:4: routes[0].protocol: unknown protocol "h3" (supported: http1, h2c, h2, auto)`},
		},
		{
			name: "h2 on a cleartext backend",
			yaml: route + "\t\tprotocol: h2\n",
			want: []string{`bad.yaml:4: routes[0].protocol: h2 is HTTP/2 over TLS, but backends[0] is http://a:80 (use h2c for cleartext HTTP/2)`},
		},
		{
			name: "h2c on a TLS backend",
			yaml: "routes:\n\t- { path: /a, backend: \"https://a\", protocol: h2c }\n",
			want: []string{`bad.yaml:2: routes[0].protocol: h2c is HTTP/2 without TLS, but backends[0] is https://a:443 (use h2 or auto for https:// backends)`},
		},
		{
			name: "grpc health check",
			yaml: route + "\t\thealth_check: { type: grpc, path: /h, expect_status: [200] }\n",
			want: []string{
				`bad.yaml:4: routes[0].health_check.type: grpc health checks need HTTP/2 backends (set protocol: h2c, h2 or auto)`,
				`bad.yaml:4: routes[0].health_check.path: does not apply to grpc health checks (they call grpc.health.v1.Health/Check; name the service in service)`,
				`bad.yaml:4: routes[0].health_check.expect_status: does not apply to grpc health checks (SERVING is healthy)`,
			},
		},
		{
			name: "health check type and service",
			yaml: route + "\t\thealth_check: { type: tcp }\n\t- { path: /b, backend: \"http://b\", health_check: { path: /h, service: x } }\n",
			want: []string{
				`bad.yaml:4: routes[0].health_check.type: unknown health check type "tcp" (supported: http, grpc)`,
				`bad.yaml:5: routes[1].health_check.service: only applies to type grpc`,
			},
		},
		{
			name: "grpc_on",
			yaml: route + "\t\tretries: { grpc_on: [unavailable, UNAVAILABLE, unavailable] }\n",
			want: []string{
				`bad.yaml:4: routes[0].retries.grpc_on[1]: unknown gRPC status "UNAVAILABLE" (e.g. unavailable, resource_exhausted, aborted, internal)`,
				`bad.yaml:4: routes[0].retries.grpc_on[2]: duplicate gRPC status "unavailable" (also grpc_on[0])`,
			},
		},
		{
			name: "health check settings without a path",
			yaml: route + "\t\thealth_check:\n\t\t\tinterval: 1s\n",
			want: []string{`bad.yaml:4: routes[0].health_check.path: is required to enable health checks`},
		},
		{
			name: "explicit timeout not below the interval",
			yaml: route + "\t\thealth_check: {path: /h, interval: 2s, timeout: 2s}\n",
			want: []string{`bad.yaml:4: routes[0].health_check.timeout: must be less than interval (2s) (got 2s)`},
		},
		{
			name: "outlier detection",
			yaml: route + `		outlier_detection:
			consecutive_failures: -1
			base_ejection: 1m
			max_ejection: 30s
			statuses: [503, 200, 600]
`,
			want: []string{
				`bad.yaml:5: routes[0].outlier_detection.consecutive_failures: must be between 0 and 1000 (got -1)`,
				`bad.yaml:7: routes[0].outlier_detection.max_ejection: must be at least base_ejection (1m0s) (got 30s)`,
				`bad.yaml:8: routes[0].outlier_detection.statuses[1]: must be between 400 and 599 (got 200)`,
				`bad.yaml:8: routes[0].outlier_detection.statuses[2]: must be between 400 and 599 (got 600)`,
			},
		},
		{
			name: "outlier zero ejection",
			yaml: route + "\t\toutlier_detection: {base_ejection: 0, consecutive_failures: 1001}\n",
			want: []string{
				`bad.yaml:4: routes[0].outlier_detection.consecutive_failures: must be between 0 and 1000 (got 1001)`,
				`bad.yaml:4: routes[0].outlier_detection.base_ejection: must be greater than 0 (got 0s)`,
			},
		},
		{
			name: "retries",
			yaml: route + `		retries:
			attempts: 11
			on: [connect_failure, "503", timeout, "503", "404", 5xx, refused]
			max_body_bytes: 16777217
`,
			want: []string{
				`bad.yaml:5: routes[0].retries.attempts: must be between 0 and 10 (got 11)`,
				`bad.yaml:6: routes[0].retries.on[3]: duplicate retry condition "503" (also on[1])`,
				`bad.yaml:6: routes[0].retries.on[4]: unknown retry condition "404" (supported: connect_failure, timeout, reset or a status 500-599)`,
				`bad.yaml:6: routes[0].retries.on[5]: unknown retry condition "5xx" (supported: connect_failure, timeout, reset or a status 500-599)`,
				`bad.yaml:6: routes[0].retries.on[6]: unknown retry condition "refused" (supported: connect_failure, timeout, reset or a status 500-599)`,
				`bad.yaml:7: routes[0].retries.max_body_bytes: must be between 0 and 16777216 (got 16777217)`,
			},
		},
		{
			name: "negative retries",
			yaml: route + "\t\tretries: {attempts: -1, max_body_bytes: -1}\n",
			want: []string{
				`bad.yaml:4: routes[0].retries.attempts: must be between 0 and 10 (got -1)`,
				`bad.yaml:4: routes[0].retries.max_body_bytes: must be between 0 and 16777216 (got -1)`,
			},
		},
		{
			name: "connection limit",
			yaml: route + "\t\tmax_conns: -1\n\t\tmax_conns_wait: -1s\n",
			want: []string{
				`bad.yaml:4: routes[0].max_conns: must not be negative (got -1)`,
				`bad.yaml:5: routes[0].max_conns_wait: duration must not be negative (got "-1s")`,
			},
		},
		{
			name: "hash key without consistent_hash",
			yaml: route + "\t\thash_key: ip\n",
			want: []string{`bad.yaml:4: routes[0].hash_key: only applies to strategy consistent_hash (strategy is round_robin)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("bad.yaml", src(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T: %v", err, err)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("errors:\n got: %s\nwant: %s", indent(got), indent(want))
			}
		})
	}
}

// TestUnknownStrategyReportedOnce: validateRoutes and validateUpstream
// both look at the strategy; an unknown one is reported once.
func TestUnknownStrategyReportedOnce(t *testing.T) {
	_, err := Parse("bad.yaml", src(route+"\t\tstrategy: random\n\t\thash_key: ip\n"))
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.List) != 1 {
		t.Fatalf("error = %v, want one problem", err)
	}
	if e := errs.List[0]; e.Path != "routes[0].strategy" || !strings.HasPrefix(e.Msg, `unknown strategy "random" (supported: round_robin`) {
		t.Errorf("got %v", e)
	}
}

// TestValidateUpstream checks validateUpstream on its own, for settings
// that need a strategy other than round_robin.
func TestValidateUpstream(t *testing.T) {
	budget := func(b float64) func(*Route) { return func(r *Route) { r.Retries.Budget = &b } }
	tests := []struct {
		name   string
		change func(r *Route)
		want   []string
	}{
		{"defaults", func(r *Route) {}, nil},
		{"every strategy", nil, nil},
		{"unknown strategy", func(r *Route) { r.Strategy = "random" }, []string{
			`t.yaml: routes[0].strategy: unknown strategy "random" (supported: round_robin, weighted_round_robin, least_connections, random_two_choices, consistent_hash)`,
		}},
		{"hash keys", func(r *Route) { r.Strategy = StrategyConsistentHash; r.HashKey = "header:X-User-Id" }, nil},
		{"cookie hash key", func(r *Route) { r.Strategy = StrategyConsistentHash; r.HashKey = "cookie:session" }, nil},
		{"bad hash key", func(r *Route) { r.Strategy = StrategyConsistentHash; r.HashKey = "query:x" }, []string{
			`t.yaml: routes[0].hash_key: invalid hash key "query:x" (want ip, header:NAME or cookie:NAME)`,
		}},
		{"bad header name", func(r *Route) { r.Strategy = StrategyConsistentHash; r.HashKey = "header:" }, []string{
			`t.yaml: routes[0].hash_key: invalid header name "" in hash key "header:"`,
		}},
		{"bad cookie name", func(r *Route) { r.Strategy = StrategyConsistentHash; r.HashKey = "cookie:a b" }, []string{
			`t.yaml: routes[0].hash_key: invalid cookie name "a b" in hash key "cookie:a b"`,
		}},
		{"hash key with another strategy", func(r *Route) { r.Strategy = StrategyLeastConnections; r.HashKey = "ip" }, []string{
			`t.yaml: routes[0].hash_key: only applies to strategy consistent_hash (strategy is least_connections)`,
		}},
		{"budget zero", budget(0), nil},
		{"budget one", budget(1), nil},
		{"budget negative", budget(-0.1), []string{`t.yaml: routes[0].retries.budget: must be between 0 and 1 (got -0.1)`}},
		{"budget above one", budget(1.5), []string{`t.yaml: routes[0].retries.budget: must be between 0 and 1 (got 1.5)`}},
		{"budget NaN", func(r *Route) { nan := 0.0; nan /= nan; r.Retries.Budget = &nan }, []string{`t.yaml: routes[0].retries.budget: must be between 0 and 1 (got NaN)`}},
		{"negative max conns wait", func(r *Route) { r.MaxConnsWait = -1 }, []string{`t.yaml: routes[0].max_conns_wait: must not be negative (got -1ns)`}},
		{"retry on 5xx codes", func(r *Route) { r.Retries.On = []string{"500", "599", "reset"} }, nil},
		{"retry on 600", func(r *Route) { r.Retries.On = []string{"600"} }, []string{
			`t.yaml: routes[0].retries.on[0]: unknown retry condition "600" (supported: connect_failure, timeout, reset or a status 500-599)`,
		}},
		{"expect status classes", func(r *Route) {
			r.HealthCheck = HealthCheck{Path: "/h?full=1", Interval: 5, Timeout: 4, HealthyThreshold: 1, UnhealthyThreshold: 100, ExpectStatus: []string{"1xx", "5xx", "100", "599"}}
		}, nil},
		{"expect status 0xx", func(r *Route) {
			r.HealthCheck = HealthCheck{Path: "/h", Interval: 5, Timeout: 4, HealthyThreshold: 1, UnhealthyThreshold: 1, ExpectStatus: []string{"0xx", "099"}}
		}, []string{
			`t.yaml: routes[0].health_check.expect_status[0]: invalid status "0xx" (want a code 100-599 or a class 1xx-5xx)`,
			`t.yaml: routes[0].health_check.expect_status[1]: invalid status "099" (want a code 100-599 or a class 1xx-5xx)`,
		}},
	}
	for _, tt := range tests {
		changes := []func(*Route){tt.change}
		if tt.change == nil {
			changes = nil
			for _, s := range strategies {
				changes = append(changes, func(r *Route) { r.Strategy = s })
			}
		}
		for _, change := range changes {
			r := pooled()
			change(&r)
			st := &vstate{file: "t.yaml"}
			validateUpstream(&r, "routes[0]", st)
			var got []string
			for _, e := range st.errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s:\n got: %s\nwant: %s", tt.name, indent(strings.Join(got, "\n")), indent(strings.Join(tt.want, "\n")))
			}
		}
	}
}

func TestUpstreamParseBudgetAndStrategies(t *testing.T) {
	c, err := Parse("good.yaml", src(`
routes:
	- path: /a
		backends: [{url: "http://a"}, {url: "http://b", weight: 3}]
		strategy: consistent_hash
		hash_key: "header:X-User"
		retries: {budget: 0.5}
	- path: /b
		backend: http://b
		strategy: least_connections
		retries: {budget: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Routes[0]; r.HashKey != "header:X-User" || *r.Retries.Budget != 0.5 {
		t.Errorf("route = %+v", r)
	}
	if r := c.Routes[1]; r.Strategy != StrategyLeastConnections || *r.Retries.Budget != 1 {
		t.Errorf("route = %+v", r)
	}
	_, err = Parse("bad.yaml", src(route+"\t\tretries: {budget: 2.5}\n"))
	if want := `bad.yaml:4: routes[0].retries.budget: must be between 0 and 1 (got 2.5)`; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}
