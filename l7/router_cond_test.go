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
