package config

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// defaultDatapath is the datapath section of a file that sets none.
func defaultDatapath() Datapath {
	return Datapath{
		Mode:            "auto",
		BPFFS:           "/sys/fs/bpf/rustygate",
		KernelRateLimit: KernelRateLimit{Ports: []string{"auto"}, MaxSources: 65536},
		Bans:            Bans{Duration: Duration(10 * time.Minute), JWTWindow: Duration(60 * time.Second), WAFWindow: Duration(60 * time.Second)},
	}
}

func TestDatapathDefaults(t *testing.T) {
	c, err := Parse("good.yaml", src(route))
	if err != nil {
		t.Fatal(err)
	}
	want := defaultDatapath()
	if !reflect.DeepEqual(c.Datapath, want) {
		t.Errorf("datapath = %+v\nwant       %+v", c.Datapath, want)
	}

	// burst follows rate; explicit values are kept.
	c, err = Parse("good.yaml", src(route+`
datapath:
	mode: kernel
	bpffs: /sys/fs/bpf/gw1
	interfaces: [eth0, veth-a.10]
	persist: true
	kernel_rate_limit:
		rate: 20
		ports: [auto, 8443]
		allow: [10.0.0.0/8, "2001:db8::1"]
		deny: [192.0.2.7]
		max_sources: 1000
	bans:
		rate_limit_factor: 2.5
		jwt_failures: 5
		jwt_window: 30s
		waf_blocks: 10
		waf_window: 2m
		duration: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	want = Datapath{
		Mode:       "kernel",
		BPFFS:      "/sys/fs/bpf/gw1",
		Interfaces: []string{"eth0", "veth-a.10"},
		Persist:    true,
		KernelRateLimit: KernelRateLimit{
			Rate: 20, Burst: 20, Ports: []string{"auto", "8443"}, MaxSources: 1000,
			Allow: []string{"10.0.0.0/8", "2001:db8::1"}, Deny: []string{"192.0.2.7"},
		},
		Bans: Bans{RateLimitFactor: 2.5, JWTFailures: 5, JWTWindow: Duration(30 * time.Second), WAFBlocks: 10, WAFWindow: Duration(2 * time.Minute), Duration: Duration(time.Hour)},
	}
	if !reflect.DeepEqual(c.Datapath, want) {
		t.Errorf("datapath = %+v\nwant       %+v", c.Datapath, want)
	}

	// An explicit empty port list is kept: the limiter then guards no port.
	c, err = Parse("good.yaml", src(route+"datapath:\n\tkernel_rate_limit: {rate: 5, burst: 50, ports: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Datapath.KernelRateLimit; k.Burst != 50 || k.Ports == nil || len(k.Ports) != 0 {
		t.Errorf("kernel_rate_limit = %+v", k)
	}

	// Defaults built in code match those of a file, and are idempotent.
	var built Config
	built.Routes = []Route{{Path: "/a", Backend: "http://a"}}
	built.Datapath.KernelRateLimit.Rate = 7
	built.ApplyDefaults()
	built.ApplyDefaults()
	if k := built.Datapath.KernelRateLimit; k.Burst != 7 || k.MaxSources != 65536 || !reflect.DeepEqual(k.Ports, []string{"auto"}) {
		t.Errorf("built = %+v", k)
	}
	if err := built.Validate(); err != nil {
		t.Errorf("built: %v", err)
	}
}

func TestDatapathErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "mode, bpffs and interfaces",
			yaml: `
datapath:
	mode: ebpf
	bpffs: sys/fs/bpf
	interfaces: [eth0, "", "a/b", "x:1", "has space", averyveryverylongname, eth0, "..", lo]
`,
			want: []string{
				`bad.yaml:2: datapath.mode: unknown mode "ebpf" (supported: auto, kernel, userspace)`,
				`bad.yaml:3: datapath.bpffs: must be an absolute path (got "sys/fs/bpf")`,
				`bad.yaml:4: datapath.interfaces[1]: invalid interface name "" (1-15 characters, none of "/", ":" or whitespace)`,
				`bad.yaml:4: datapath.interfaces[2]: invalid interface name "a/b" (1-15 characters, none of "/", ":" or whitespace)`,
				`bad.yaml:4: datapath.interfaces[3]: invalid interface name "x:1" (1-15 characters, none of "/", ":" or whitespace)`,
				`bad.yaml:4: datapath.interfaces[4]: invalid interface name "has space" (1-15 characters, none of "/", ":" or whitespace)`,
				`bad.yaml:4: datapath.interfaces[5]: invalid interface name "averyveryverylongname" (1-15 characters, none of "/", ":" or whitespace)`,
				`bad.yaml:4: datapath.interfaces[6]: duplicate interface "eth0" (also interfaces[0])`,
				`bad.yaml:4: datapath.interfaces[7]: invalid interface name ".." (1-15 characters, none of "/", ":" or whitespace)`,
			},
		},
		{
			name: "bpffs root",
			yaml: "datapath:\n\tbpffs: /\n",
			want: []string{`bad.yaml:2: datapath.bpffs: must not be the root directory`},
		},
		{
			name: "kernel_rate_limit numbers",
			yaml: `
datapath:
	kernel_rate_limit:
		rate: -1
		burst: -2
		max_sources: 0
`,
			want: []string{
				`bad.yaml:3: datapath.kernel_rate_limit.rate: must not be negative (got -1)`,
				`bad.yaml:4: datapath.kernel_rate_limit.burst: must not be negative (got -2)`,
				`bad.yaml:5: datapath.kernel_rate_limit.max_sources: must be between 1 and 16777216 (got 0)`,
			},
		},
		{
			name: "zero burst with a rate",
			yaml: `
datapath:
	kernel_rate_limit:
		rate: 10
		burst: 0
		max_sources: 16777217
`,
			want: []string{
				`bad.yaml:4: datapath.kernel_rate_limit.burst: must be at least 1 when rate is set (got 0)`,
				`bad.yaml:5: datapath.kernel_rate_limit.max_sources: must be between 1 and 16777216 (got 16777217)`,
			},
		},
		{
			name: "ports",
			yaml: `
datapath:
	kernel_rate_limit:
		ports: [auto, 80, 0, 65536, http, 80, AUTO, auto]
`,
			want: []string{
				`bad.yaml:3: datapath.kernel_rate_limit.ports[2]: invalid port "0" (want "auto" or 1-65535)`,
				`bad.yaml:3: datapath.kernel_rate_limit.ports[3]: invalid port "65536" (want "auto" or 1-65535)`,
				`bad.yaml:3: datapath.kernel_rate_limit.ports[4]: invalid port "http" (want "auto" or 1-65535)`,
				`bad.yaml:3: datapath.kernel_rate_limit.ports[5]: duplicate port "80" (also ports[1])`,
				`bad.yaml:3: datapath.kernel_rate_limit.ports[6]: invalid port "AUTO" (want "auto" or 1-65535)`,
				`bad.yaml:3: datapath.kernel_rate_limit.ports[7]: duplicate port "auto" (also ports[0])`,
			},
		},
		{
			name: "CIDRs",
			yaml: `
datapath:
	kernel_rate_limit:
		allow: [10.0.0.0/8, 10.1.2.3, "::1", "2001:db8::/32", 300.1.1.1, "10.0.0.0/33"]
		deny: ["fe80::1%eth0", "", "10.0.0.0/-1", "::ffff:10.0.0.0/104"]
`,
			want: []string{
				`bad.yaml:3: datapath.kernel_rate_limit.allow[4]: invalid CIDR "300.1.1.1" (want an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32)`,
				`bad.yaml:3: datapath.kernel_rate_limit.allow[5]: invalid CIDR "10.0.0.0/33" (want an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32)`,
				`bad.yaml:4: datapath.kernel_rate_limit.deny[0]: invalid CIDR "fe80::1%eth0" (want an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32)`,
				`bad.yaml:4: datapath.kernel_rate_limit.deny[1]: invalid CIDR "" (want an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32)`,
				`bad.yaml:4: datapath.kernel_rate_limit.deny[2]: invalid CIDR "10.0.0.0/-1" (want an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32)`,
			},
		},
		{
			name: "bans",
			yaml: `
datapath:
	bans:
		rate_limit_factor: -0.5
		jwt_failures: -1
		jwt_window: 0
		duration: 0s
		waf_blocks: -2
		waf_window: 0s
`,
			want: []string{
				`bad.yaml:3: datapath.bans.rate_limit_factor: must be 0 or more (got -0.5)`,
				`bad.yaml:4: datapath.bans.jwt_failures: must not be negative (got -1)`,
				`bad.yaml:5: datapath.bans.jwt_window: must be greater than 0 (got 0s)`,
				`bad.yaml:6: datapath.bans.duration: must be greater than 0 (got 0s)`,
				`bad.yaml:7: datapath.bans.waf_blocks: must not be negative (got -2)`,
				`bad.yaml:8: datapath.bans.waf_window: must be greater than 0 (got 0s)`,
			},
		},
		{
			name: "bans factor NaN",
			yaml: "datapath:\n\tbans:\n\t\trate_limit_factor: .nan\n",
			want: []string{`bad.yaml:3: datapath.bans.rate_limit_factor: must be 0 or more (got NaN)`},
		},
		{
			name: "unknown key",
			yaml: "datapath:\n\tkernel_rate_limit:\n\t\tburts: 5\n",
			want: []string{`bad.yaml:3: unknown key "burts" at datapath.kernel_rate_limit (known: rate, burst, ports, max_sources, allow, deny)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", src(tt.yaml+route))
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want *Errors", err)
			}
			var got []string
			for _, e := range errs.List {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestParseCIDR(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" when invalid
	}{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"10.1.2.3", "10.1.2.3/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8:1::/32", "2001:db8::/32"},
		{"::ffff:10.1.0.0/112", "10.1.0.0/16"},
		{"::ffff:10.1.2.3", "10.1.2.3/32"},
		{"::/0", "::/0"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"fe80::1%eth0", ""},
		{"10.0.0.0/33", ""},
		{"", ""},
		{"example.com", ""},
	}
	for _, tt := range tests {
		p, ok := ParseCIDR(tt.in)
		if tt.want == "" {
			if ok {
				t.Errorf("ParseCIDR(%q) = %v, want invalid", tt.in, p)
			}
			continue
		}
		if !ok || p != netip.MustParsePrefix(tt.want) {
			t.Errorf("ParseCIDR(%q) = %v, %v, want %s", tt.in, p, ok, tt.want)
		}
	}
}
