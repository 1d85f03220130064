package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateTrafficMiddlewares: `rustygate validate` refuses bad
// settings of headers, redirect, rewrite and limits, naming the file, the
// line and the key path of the value, and accepts good ones.
func TestValidateTrafficMiddlewares(t *testing.T) {
	dir := t.TempDir()
	config := func(entry string) string {
		return fmt.Sprintf(`server: { listen: "127.0.0.1:0" }
admin: { listen: "off" }
routes:
  - path: "/p"
    backend: "http://127.0.0.1:9"
    middlewares:
      - %s
`, strings.ReplaceAll(strings.TrimSpace(entry), "\n", "\n        "))
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := config(`name: headers
request: { set: { X-User: "{jwt.sub}" } }`) + `      - { name: redirect, scheme: https, status: 308 }
      - { name: rewrite, regex: "^/p/(.*)$", replacement: "/$1" }
      - { name: limits, max_request_body: 10m, server_header: remove }
`
	if code, stdout, stderr := runValidate(t, write("good.yaml", good)); code != 0 {
		t.Fatalf("good settings: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, tc := range []struct{ name, entry, want string }{
		{"unknown placeholder", "name: headers\nrequest:\n  set: { X-A: \"{user}\" }", ":9: routes[0].middlewares[0].request.set.X-A: unknown placeholder {user}"},
		{"framing header", "name: headers\nresponse:\n  remove: [Content-Length]", ":9: routes[0].middlewares[0].response.remove[0]: header Content-Length is managed by the proxy"},
		{"redirect regex", "name: redirect\nregex: \"^/(a\"\nreplacement: /b", ":8: routes[0].middlewares[0].regex: invalid regex: error parsing regexp: missing closing )"},
		{"redirect status", "name: redirect\nscheme: https\nstatus: 200", ":9: routes[0].middlewares[0].status: invalid status 200"},
		{"rewrite regex", "name: rewrite\nregex: \"([\"\nreplacement: /b", ":8: routes[0].middlewares[0].regex: invalid regex"},
		{"rewrite capture", "name: rewrite\nregex: \"^/(a)$\"\nreplacement: /$2", ":9: routes[0].middlewares[0].replacement: replacement names ${2}"},
		{"limits size", "name: limits\nmax_request_body: 10q", ":8: routes[0].middlewares[0].max_request_body: invalid size \"10q\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", config(tc.entry))
			code, stdout, stderr := runValidate(t, cfg)
			if code == 0 || !strings.Contains(stderr, cfg+tc.want) {
				t.Fatalf("validate: exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, cfg+tc.want)
			}
		})
	}
}
