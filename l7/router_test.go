package l7

import (
	"testing"
)

func mkRoutes(specs ...[3]string) []*Route {
	var out []*Route
	for _, s := range specs {
		rt := &Route{Name: s[0] + s[1] + s[2], Host: s[0], Path: s[1]}
		if s[2] != "" {
			rt.Methods = []string{s[2]}
		}
		out = append(out, rt)
	}
	return out
}

func TestRouterMatch(t *testing.T) {
	r := NewRouter(mkRoutes(
		[3]string{"", "/", ""},
		[3]string{"", "/api", ""},
		[3]string{"", "/api/test", ""},
		[3]string{"", "/api/users", "POST"},
		[3]string{"example.com", "/api", ""},
		[3]string{"*.example.com", "/", ""},
		[3]string{"*.a.example.com", "/", ""},
		[3]string{"", "/only-get", "GET"},
	))
	cases := []struct {
		host, path, method string
		want               string // route name, "" for none
		ok                 bool
	}{
		{"x", "/", "GET", "/", true},
		{"x", "/apix", "GET", "/", true},
		{"x", "/api", "GET", "/api", true},
		{"x", "/api/", "GET", "/api", true},
		{"x", "/api/other", "GET", "/api", true},
		{"x", "/api/test", "GET", "/api/test", true},
		{"x", "/api/test/deeper/still", "GET", "/api/test", true},
		{"x", "/api/testing", "GET", "/api", true},
		{"x", "/api/users", "POST", "/api/usersPOST", true},
		{"x", "/api/users", "GET", "/api", true},
		{"EXAMPLE.com:8080", "/api/x", "GET", "example.com/api", true},
		{"example.com.", "/api/x", "GET", "example.com/api", true},
		{"example.com", "/other", "GET", "/", true},
		{"www.example.com", "/api", "GET", "*.example.com/", true},
		{"b.a.example.com", "/", "GET", "*.a.example.com/", true},
		{"[::1]:80", "/api", "GET", "/api", true},
		{"x", "/only-get", "HEAD", "/only-getGET", true},
		{"x", "/only-get/sub", "DELETE", "/", true},
		{"x", "*", "OPTIONS", "", false},
	}
	for _, c := range cases {
		rt, ok := r.Match([]byte(c.host), []byte(c.path), []byte(c.method))
		got := ""
		if rt != nil {
			got = rt.Name
		}
		if got != c.want || ok != c.ok {
			t.Errorf("Match(%q, %q, %q) = %q, %v; want %q, %v", c.host, c.path, c.method, got, ok, c.want, c.ok)
		}
	}
}

func TestRouterMethodNotAllowed(t *testing.T) {
	r := NewRouter(mkRoutes([3]string{"", "/w", "POST"}))
	rt, ok := r.Match([]byte("h"), []byte("/w/x"), []byte("GET"))
	if ok || rt == nil || rt.Name != "/wPOST" {
		t.Fatalf("got %v %v, want the POST route with ok=false", rt, ok)
	}
	rt, ok = r.Match([]byte("h"), []byte("/other"), []byte("GET"))
	if ok || rt != nil {
		t.Fatalf("got %v %v, want no route", rt, ok)
	}
}

func BenchmarkRouterMatch(b *testing.B) {
	var specs [][3]string
	for _, p := range []string{"/", "/api", "/api/test", "/api/users", "/static", "/v1/orders", "/v1/orders/items", "/v2"} {
		specs = append(specs, [3]string{"", p, ""})
	}
	r := NewRouter(mkRoutes(specs...))
	host, path, method := []byte("example.com"), []byte("/v1/orders/items/42/details"), []byte("GET")
	b.ReportAllocs()
	for b.Loop() {
		if rt, _ := r.Match(host, path, method); rt == nil {
			b.Fatal("no match")
		}
	}
}

// FuzzRouter checks that matching never panics and that a match is
// always a prefix of the path on a segment boundary.
func FuzzRouter(f *testing.F) {
	f.Add("example.com", "/api/test/x", "GET")
	f.Add("", "/", "POST")
	f.Add("[::1]:80", "*", "OPTIONS")
	f.Add("a.example.com.", "//a//b", "DELETE")
	r := NewRouter(mkRoutes(
		[3]string{"", "/", "GET"},
		[3]string{"", "/api", ""},
		[3]string{"", "/api/test", "POST"},
		[3]string{"example.com", "/api", ""},
		[3]string{"*.example.com", "/x", ""},
	))
	f.Fuzz(func(t *testing.T, host, path, method string) {
		rt, ok := r.Match([]byte(host), []byte(path), []byte(method))
		if !ok || rt == nil {
			return
		}
		if rt.Path == "/" {
			return
		}
		if len(path) < len(rt.Path) || path[:len(rt.Path)] != rt.Path {
			t.Fatalf("route %q matched path %q", rt.Path, path)
		}
		if len(path) > len(rt.Path) && path[len(rt.Path)] != '/' {
			t.Fatalf("route %q matched %q off a segment boundary", rt.Path, path)
		}
	})
}
