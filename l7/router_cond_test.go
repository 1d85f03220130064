package l7

import (
	"fmt"
	"testing"

	"github.com/rustygate/rustygate/config"
)

// TestRouterConditions: exact paths, header and query conditions (the
// Gateway API's matches) are tried before catch-alls of the same prefix,
// and a request failing them falls back to the catch-all.
func TestRouterConditions(t *testing.T) {
	canary := &Route{Name: "canary", Path: "/shop", cond: routeCond{headers: []config.NameValue{{Name: "x-canary", Value: "yes"}}}}
	beta := &Route{Name: "beta", Path: "/shop", cond: routeCond{query: []config.NameValue{{Name: "v", Value: "beta 2"}}}}
	both := &Route{Name: "both", Path: "/shop", cond: routeCond{
		headers: []config.NameValue{{Name: "x-canary", Value: "yes"}}, query: []config.NameValue{{Name: "v", Value: "beta 2"}}}}
	exact := &Route{Name: "exact", Path: "/exact", cond: routeCond{exact: true}}
	all := &Route{Name: "all", Path: "/shop"}
	r := NewRouter([]*Route{all, canary, beta, both, exact})
	cases := []struct {
		path, query, hdr, want string
	}{
		{"/shop/x", "", "", "all"},
		{"/shop/x", "", "X-Canary: yes", "canary"},
		{"/shop/x", "", "x-canary: no", "all"},
		{"/shop", "?a=1&v=beta+2", "", "beta"},
		{"/shop", "?v=beta%202", "X-CANARY: yes", "both"},
		{"/shop", "?v=beta", "", "all"},
		{"/exact", "", "", "exact"},
		{"/exact/more", "", "", ""},
	}
	for _, c := range cases {
		req := &request{host: []byte("h"), path: []byte(c.path), query: []byte(c.query), method: []byte("GET")}
		if c.hdr != "" {
			var name, value string
			fmt.Sscanf(c.hdr, "%s %s", &name, &value)
			req.fields = []hfield{{name: []byte(name[:len(name)-1]), value: []byte(value)}}
		}
		rt, ok := r.matchRequest(req)
		got := ""
		if ok {
			got = rt.Name
		}
		if got != c.want {
			t.Errorf("%s%s %q: got %q, want %q", c.path, c.query, c.hdr, got, c.want)
		}
	}
	// Match (no request: no headers, no query) never picks a conditional route.
	if rt, ok := r.Match([]byte("h"), []byte("/shop"), []byte("GET")); !ok || rt != all {
		t.Errorf("Match without a request: %v %v", rt, ok)
	}
}

// BenchmarkRouterRoutes is the lookup cost with 10 and with 1,000 routes
// of the shape the Kubernetes provider makes (one host each, a prefix,
// some with a header condition): a lookup does not grow with the number
// of routes.
func BenchmarkRouterRoutes(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			var routes []*Route
			for i := 0; i < n; i++ {
				host := fmt.Sprintf("h%d.example.com", i)
				routes = append(routes, &Route{Name: host, Host: host, Path: "/api"},
					&Route{Name: host + "c", Host: host, Path: "/api", cond: routeCond{headers: []config.NameValue{{Name: "x-canary", Value: "yes"}}}})
			}
			r := NewRouter(routes)
			req := &request{host: []byte(fmt.Sprintf("h%d.example.com", n/2)), path: []byte("/api/v1/orders/42"), method: []byte("GET"),
				fields: []hfield{{name: []byte("Accept"), value: []byte("*/*")}, {name: []byte("User-Agent"), value: []byte("bench")}}}
			b.ReportAllocs()
			for b.Loop() {
				if rt, ok := r.matchRequest(req); !ok || rt.cond.any() {
					b.Fatal("wrong match")
				}
			}
		})
	}
}
