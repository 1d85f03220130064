package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// l4Item is one l4 list item listening on listen, with one backend.
func l4Item(name, listen string) string {
	return "\t- name: " + name + "\n\t\tlisten: \"" + listen + "\"\n\t\tbackends: [{addr: \"127.0.0.1:1\"}]\n"
}

func TestL4ListenErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "reversed range",
			yaml: "l4:\n" + l4Item("a", "127.0.0.1:9100-9000"),
			want: []string{`bad.yaml:3: l4[0].listen: invalid port range "9100-9000" in "127.0.0.1:9100-9000" (the first port is above the last)`},
		},
		{
			name: "range from port 0",
			yaml: "l4:\n" + l4Item("a", "127.0.0.1:0-10"),
			want: []string{`bad.yaml:3: l4[0].listen: invalid port range "0-10" in "127.0.0.1:0-10" (want LO-HI, both ports 1-65535)`},
		},
		{
			name: "range past 65535",
			yaml: "l4:\n" + l4Item("a", "127.0.0.1:65000-65536"),
			want: []string{`bad.yaml:3: l4[0].listen: invalid port range "65000-65536" in "127.0.0.1:65000-65536" (want LO-HI, both ports 1-65535)`},
		},
		{
			name: "range without an end",
			yaml: "l4:\n" + l4Item("a", "127.0.0.1:9000-"),
			want: []string{`bad.yaml:3: l4[0].listen: invalid port range "9000-" in "127.0.0.1:9000-" (want LO-HI, both ports 1-65535)`},
		},
		{
			name: "range without a start",
			yaml: "l4:\n" + l4Item("a", ":-9000"),
			want: []string{`bad.yaml:3: l4[0].listen: invalid port range "-9000" in ":-9000" (want LO-HI, both ports 1-65535)`},
		},
		{
			name: "range of names",
			yaml: "l4:\n" + l4Item("a", "127.0.0.1:http-https"),
			want: []string{`bad.yaml:3: l4[0].listen: invalid port range "http-https" in "127.0.0.1:http-https" (want LO-HI, both ports 1-65535)`},
		},
		{
			name: "range on a host name",
			yaml: "l4:\n" + l4Item("a", "localhost:9000-9010"),
			want: []string{`bad.yaml:3: l4[0].listen: invalid host "localhost" in "localhost:9000-9010" (a port range needs an IP address, or no host for every address)`},
		},
		{
			name: "range with an IPv6 zone",
			yaml: "l4:\n" + l4Item("a", "[fe80::1%eth0]:9000-9010"),
			want: []string{`bad.yaml:3: l4[0].listen: invalid host "fe80::1%eth0" in "[fe80::1%eth0]:9000-9010" (a port range needs an IP address, or no host for every address)`},
		},
		{
			name: "range holds the server's port",
			yaml: "server:\n\tlisten: \"127.0.0.1:9050\"\nl4:\n" + l4Item("a", "0.0.0.0:9000-9099"),
			want: []string{`bad.yaml:5: l4[0].listen: must differ from server.listen (both use port 9050)`},
		},
		{
			name: "range holds the admin port",
			yaml: "admin:\n\tlisten: \":9000\"\nl4:\n" + l4Item("a", "127.0.0.1:8990-9010"),
			want: []string{`bad.yaml:5: l4[0].listen: must differ from admin.listen (both use port 9000)`},
		},
		{
			name: "single port on the server's",
			yaml: "server:\n\tlisten: \"127.0.0.1:9050\"\nl4:\n" + l4Item("a", ":9050"),
			want: []string{`bad.yaml:5: l4[0].listen: must differ from server.listen`},
		},
		{
			name: "two ranges overlap",
			yaml: "l4:\n" + l4Item("a", "127.0.0.1:9000-9099") + l4Item("b", "127.0.0.1:9050-9199"),
			want: []string{`bad.yaml:6: l4[1].listen: overlaps l4[0].listen (both use ports 9050-9099)`},
		},
		{
			name: "single port inside a range",
			yaml: "l4:\n" + l4Item("a", "127.0.0.1:9000-9099") + l4Item("b", ":9042"),
			want: []string{`bad.yaml:6: l4[1].listen: overlaps l4[0].listen (both use port 9042)`},
		},
		{
			name: "range over a single port",
			yaml: "l4:\n" + l4Item("a", "[::1]:9005") + l4Item("b", "[::]:9000-9010"),
			want: []string{`bad.yaml:6: l4[1].listen: overlaps l4[0].listen (both use port 9005)`},
		},
		{
			name: "two single ports",
			yaml: "l4:\n" + l4Item("a", "127.0.0.1:9000") + l4Item("b", ":9000"),
			want: []string{`bad.yaml:6: l4[1].listen: same address as l4[0]`},
		},
		{
			name: "range on server.listen",
			yaml: "server:\n\tlisten: \"127.0.0.1:9000-9010\"\n",
			want: []string{`bad.yaml:2: server.listen: invalid port "9000-9010" in "127.0.0.1:9000-9010" (want 0-65535)`},
		},
		{
			name: "auto guards too many ports",
			yaml: "l4:\n" + l4Item("a", "127.0.0.1:10000-11100"),
			want: []string{`bad.yaml: datapath.kernel_rate_limit.ports: guards 1102 ports, more than the 1024 the limiter holds (auto stands for the listeners' ports, every port of an l4 port range included): list the ports to guard`},
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
				t.Fatalf("error is %T, want *Errors: %v", err, err)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("errors:\n got: %s\nwant: %s", indent(got), indent(want))
			}
		})
	}
}

func TestL4ListenRanges(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		want  []ListenRange // per listener; the zero value for a single port
		ports []int         // ListenPorts
	}{
		{
			name:  "IPv4 wildcard range",
			yaml:  "server:\n\tlisten: \":8080\"\nl4:\n" + l4Item("a", "0.0.0.0:9000-9003"),
			want:  []ListenRange{{Host: "0.0.0.0", Lo: 9000, Hi: 9003}},
			ports: []int{8080, 9000, 9001, 9002, 9003},
		},
		{
			name:  "loopback range beside a single port and an IPv6 range",
			yaml:  "server:\n\tlisten: \"127.0.0.1:0\"\nl4:\n" + l4Item("a", "127.0.0.1:19000-19001") + l4Item("b", "127.0.0.1:19002") + l4Item("c", "[::1]:19000-19001"),
			want:  []ListenRange{{Host: "127.0.0.1", Lo: 19000, Hi: 19001}, {}, {Host: "::1", Lo: 19000, Hi: 19001}},
			ports: []int{19000, 19001, 19002, 19000, 19001},
		},
		{
			name:  "same ports on other hosts, one-port range",
			yaml:  "server:\n\tlisten: \"127.0.0.1:9000\"\nl4:\n" + l4Item("a", "127.0.0.2:9000-9001") + l4Item("b", ":9002-9002"),
			want:  []ListenRange{{Host: "127.0.0.2", Lo: 9000, Hi: 9001}, {Host: "", Lo: 9002, Hi: 9002}},
			ports: []int{9000, 9000, 9001, 9002},
		},
		{
			name:  "a large range with the guarded ports listed",
			yaml:  "datapath:\n\tkernel_rate_limit:\n\t\tports: [8080]\nl4:\n" + l4Item("a", "127.0.0.1:10000-30000"),
			want:  []ListenRange{{Host: "127.0.0.1", Lo: 10000, Hi: 30000}},
			ports: nil, // not compared: 20002 of them
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("good.yaml", src(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range c.L4 {
				if !IsListenRange(l.Listen) {
					if tt.want[i] != (ListenRange{}) {
						t.Errorf("l4[%d] %q: not a range", i, l.Listen)
					}
					continue
				}
				r, err := ParseListenRange(l.Listen)
				if err != nil || r != tt.want[i] {
					t.Errorf("ParseListenRange(%q) = %+v, %v; want %+v", l.Listen, r, err, tt.want[i])
				}
			}
			if tt.ports != nil && !reflect.DeepEqual(c.ListenPorts(), tt.ports) {
				t.Errorf("ListenPorts() = %v, want %v", c.ListenPorts(), tt.ports)
			}
		})
	}
}

func TestListenRangeHelpers(t *testing.T) {
	r, err := ParseListenRange("[::1]:9000-9010")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Addr(9005); got != "[::1]:9005" {
		t.Errorf("Addr(9005) = %q", got)
	}
	if r.Wildcard() {
		t.Error("[::1] is not a wildcard")
	}
	for _, host := range []string{"", "0.0.0.0", "::"} {
		if !(ListenRange{Host: host}).Wildcard() {
			t.Errorf("%q should be a wildcard", host)
		}
	}
	for _, bad := range []string{"127.0.0.1:9000", "127.0.0.1:9010-9000", "nohost"} {
		if _, err := ParseListenRange(bad); err == nil {
			t.Errorf("ParseListenRange(%q): no error", bad)
		}
	}
}
