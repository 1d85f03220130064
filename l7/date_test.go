package l7

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDateHeader: every response carries one Date header on every
// engine: replies the gateway writes itself (banner, 404, 405, 400, 408)
// get the current date, a proxied response keeps its backend's Date, and
// one whose backend sent none gets the current date.
func TestDateHeader(t *testing.T) {
	const backendDate = "Mon, 01 Jan 2024 00:00:00 GMT"
	dated := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", backendDate)
		io.WriteString(w, "ok")
	})
	undated := rawBackend(t) // answers without a Date
	routes := fmt.Sprintf("  - { path: \"/dated\", backend: %q, methods: [GET] }\n  - { path: \"/undated\", backend: \"http://%s\" }\n", dated.URL, undated)
	cases := []struct {
		name, raw string
		status    int
		date      string // "" : the current date
	}{
		{"banner", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, ""},
		{"no route", "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, ""},
		{"method", "DELETE /dated HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, ""},
		{"bad request", "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, ""},
		{"head timeout", "GET / HTTP/1.1\r\nHost: x\r\n", 408, ""},
		{"proxied", "GET /dated HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, backendDate},
		{"proxied without date", "GET /undated HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, ""},
	}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			gw := startGateway(t, withServer(engine, "read_header_timeout: 500ms"), routes)
			for _, tc := range cases {
				if engine == "standard" && tc.status == 408 {
					continue // net/http closes without an answer
				}
				raw, _ := rawExchange(t, gw.addr, tc.raw)
				resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
				if err != nil {
					t.Errorf("%s: %v\n%s", tc.name, err, raw)
					continue
				}
				resp.Body.Close()
				dates := resp.Header.Values("Date")
				if resp.StatusCode != tc.status || len(dates) != 1 {
					t.Errorf("%s: status %d with Date %q, want %d with one Date\n%s", tc.name, resp.StatusCode, dates, tc.status, raw)
					continue
				}
				if tc.date != "" {
					if dates[0] != tc.date {
						t.Errorf("%s: Date %q, want the backend's %q", tc.name, dates[0], tc.date)
					}
					continue
				}
				d, err := http.ParseTime(dates[0])
				if err != nil || time.Since(d).Abs() > 2*time.Second {
					t.Errorf("%s: Date %q is not now (%v)", tc.name, dates[0], err)
				}
			}
		})
	}
}

// BenchmarkAppendDate: writing the Date line allocates nothing.
func BenchmarkAppendDate(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendDate(buf[:0])
	}
}
