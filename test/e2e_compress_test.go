package e2e_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// czJSON returns n bytes of a JSON array of records.
func czJSON(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n-64; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"record %d","active":%t},`, i, i*31, i%3 == 0)
	}
	b.WriteString(`{"id":-1}],"end":true}`)
	for b.Len() < n {
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

// czDecode decodes body by the response's Content-Encoding.
func czDecode(t *testing.T, coding string, r io.Reader) io.Reader {
	t.Helper()
	switch coding {
	case "":
		return r
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		return zr
	case "br":
		return brotli.NewReader(r)
	case "zstd":
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(zr.Close)
		return zr
	}
	t.Fatalf("unexpected Content-Encoding %q", coding)
	return nil
}

// czGet sends method path with the given headers (name, value pairs) and
// returns the response and its body as received (not decoded).
func czGet(t *testing.T, c *http.Client, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, c, req)
}

// czBackend serves the documents of TestCompress.
func czBackend(t *testing.T, doc []byte) string {
	pre := new(bytes.Buffer)
	zw := gzip.NewWriter(pre)
	zw.Write(doc)
	zw.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `"doc-1"`)
		w.Header().Set("Vary", r.URL.Query().Get("vary"))
		if cc := r.URL.Query().Get("cc"); cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		if ct := r.URL.Query().Get("ct"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		n := len(doc)
		if s := r.URL.Query().Get("n"); s != "" {
			n, _ = strconv.Atoi(s)
		}
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		w.Write(doc[:n])
	})
	mux.HandleFunc("/pre.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(pre.Bytes())
	})
	mux.HandleFunc("/file.json", func(w http.ResponseWriter, r *http.Request) {
		// Range, HEAD, conditional requests and 304 as net/http does them.
		w.Header().Set("ETag", `"file-1"`)
		w.Header().Set("Content-Type", "application/json")
		http.ServeContent(w, r, "file.json", time.Unix(1700000000, 0), bytes.NewReader(doc))
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNoContent)
	})
	return newBackend(t, mux.ServeHTTP).URL
}

// TestCompress runs the compress middleware through the gateway binary on
// every engine: negotiation, each encoding, thresholds, content types,
// what is left alone, and the head of a compressed response.
func TestCompress(t *testing.T) {
	doc := czJSON(20 << 10)
	be := czBackend(t, doc)
	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, policyConfig(engine, "  - name: compress\n", fmt.Sprintf(`  - name: api
    path: "/"
    backend: %q
  - name: all
    path: "/all"
    strip_prefix: true
    backend: %q
    middlewares:
      - { name: compress, min_length: 0, encodings: [gzip, br] }
  - name: off
    path: "/off"
    strip_prefix: true
    backend: %q
    middlewares:
      - { name: compress, enabled: false }
`, be, be, be)))
		c := newClient(t)
		u := g.URL()

		t.Run("negotiation", func(t *testing.T) {
			for _, tc := range []struct{ accept, want string }{
				{"gzip", "gzip"},
				{"br", "br"},
				{"zstd", "zstd"},
				{"gzip, deflate, br, zstd", "zstd"},
				{"gzip, deflate, br", "gzip"},
				{"gzip;q=0.5, br;q=0.9", "br"},
				{"zstd;q=0, gzip", "gzip"},
				{"*", "zstd"},
				{"*;q=0.1, gzip;q=0", "zstd"},
				{"identity", ""},
				{"gzip;q=0, br;q=0, zstd;q=0", ""},
				{"", ""},
			} {
				resp, body := czGet(t, c, "GET", u+"/json", "Accept-Encoding", tc.accept)
				got := resp.Header.Get("Content-Encoding")
				if got != tc.want {
					t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.want)
					continue
				}
				dec, err := io.ReadAll(czDecode(t, got, bytes.NewReader(body)))
				if err != nil || !bytes.Equal(dec, doc) {
					t.Errorf("Accept-Encoding %q: %v; decoded %d bytes, want the %d of the backend", tc.accept, err, len(dec), len(doc))
				}
				if v := resp.Header.Get("Vary"); !strings.EqualFold(v, "Accept-Encoding") {
					t.Errorf("Accept-Encoding %q: Vary %q", tc.accept, v)
				}
				if got != "" && (resp.ContentLength != -1 || len(body) >= len(doc)/2) {
					t.Errorf("%s: Content-Length %d, %d bytes for %d", got, resp.ContentLength, len(body), len(doc))
				}
			}
		})

		t.Run("head of a compressed response", func(t *testing.T) {
			resp, _ := czGet(t, c, "GET", u+"/json?vary=Origin", "Accept-Encoding", "gzip")
			if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("ETag") != `W/"doc-1"` {
				t.Fatalf("head %v", resp.Header)
			}
			if v := resp.Header.Values("Vary"); len(v) != 1 || v[0] != "Origin, Accept-Encoding" {
				t.Fatalf("Vary %q, want one merged value", v)
			}
			if engine != "standard" && !slicesContain(resp.TransferEncoding, "chunked") {
				t.Fatalf("not chunked: %v", resp.TransferEncoding)
			}
			resp, _ = czGet(t, c, "GET", u+"/json?vary=Accept-Encoding", "Accept-Encoding", "gzip")
			if v := resp.Header.Values("Vary"); len(v) != 1 || v[0] != "Accept-Encoding" {
				t.Fatalf("Vary %q: Accept-Encoding twice", v)
			}
		})

		t.Run("thresholds", func(t *testing.T) {
			for _, tc := range []struct {
				path, want string
				n          int
			}{
				{"/json?n=1023", "", 1023},
				{"/json?n=1024", "gzip", 1024},
				{"/json?n=1023&chunked=1", "", 1023},
				{"/json?n=5000&chunked=1", "gzip", 5000},
				{"/all/json?n=10", "gzip", 10},
				{"/off/json", "", len(doc)},
			} {
				resp, body := czGet(t, c, "GET", u+tc.path, "Accept-Encoding", "gzip")
				if got := resp.Header.Get("Content-Encoding"); got != tc.want {
					t.Errorf("%s: Content-Encoding %q, want %q", tc.path, got, tc.want)
					continue
				}
				if dec, _ := io.ReadAll(czDecode(t, tc.want, bytes.NewReader(body))); !bytes.Equal(dec, doc[:tc.n]) {
					t.Errorf("%s: %d bytes decoded, want the backend's %d", tc.path, len(dec), tc.n)
				}
			}
		})

		t.Run("left alone", func(t *testing.T) {
			for _, tc := range []struct {
				name, method, path string
				hdr                []string
				status             int
			}{
				{"already encoded", "GET", "/pre.json", nil, 200},
				{"no-transform", "GET", "/json?cc=public,%20no-transform", nil, 200},
				{"image", "GET", "/json?ct=image/png", nil, 200},
				{"HEAD", "HEAD", "/file.json", nil, 200},
				{"range", "GET", "/file.json", []string{"Range", "bytes=0-99"}, 206},
				{"304", "GET", "/file.json", []string{"If-None-Match", `"file-1"`}, 304},
				{"204", "GET", "/empty", nil, 204},
			} {
				hdr := append([]string{"Accept-Encoding", "gzip, br, zstd"}, tc.hdr...)
				resp, body := czGet(t, c, tc.method, u+tc.path, hdr...)
				if resp.StatusCode != tc.status {
					t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
				}
				ce := resp.Header.Get("Content-Encoding")
				switch {
				case tc.name == "already encoded":
					dec, err := io.ReadAll(czDecode(t, "gzip", bytes.NewReader(body)))
					if ce != "gzip" || err != nil || !bytes.Equal(dec, doc) {
						t.Errorf("%s: compressed twice (Content-Encoding %q, %v)", tc.name, ce, err)
					}
				case ce != "":
					t.Errorf("%s: Content-Encoding %q", tc.name, ce)
				case tc.name == "range" && string(body) != string(doc[:100]):
					t.Errorf("range: body %q", body)
				case tc.name == "HEAD" && resp.ContentLength != int64(len(doc)):
					t.Errorf("HEAD: Content-Length %d", resp.ContentLength)
				case tc.name == "HEAD" && resp.Header.Get("Vary") != "":
					t.Errorf("HEAD: Vary %q", resp.Header.Get("Vary"))
				}
			}
		})
	})
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// czNginxConf serves static files (with nginx's own ETag, Last-Modified,
// ranges and 304s) and, with gzip_static, a file nginx stored compressed.
const czNginxConf = `daemon off;
worker_processes 1;
pid nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    types { application/json json; application/javascript js; }
    server {
        listen 127.0.0.1:%d;
        root www;
        # The gateway's requests carry Via: nginx serves them the stored
        # .gz file only with gzip_proxied.
        location /static/ { gzip_static on; gzip_proxied any; }
    }
}
`

// TestCompressNginxBackend: in front of a real nginx serving files, a
// JSON document is compressed with nginx's strong ETag made weak, which
// nginx then honours for a 304; nginx's ranges are left alone; a file
// nginx serves gzip-encoded itself is not compressed again.
func TestCompressNginxBackend(t *testing.T) {
	doc := czJSON(64 << 10)
	js := bytes.Repeat([]byte("function f(){return 42}\n"), 2000)
	ngx := startNginxConf(t, czNginxConf)
	// nginx's workers run as another user: they must reach the files.
	for _, d := range []string{filepath.Dir(ngx.prefix), ngx.prefix} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	www := filepath.Join(ngx.prefix, "www")
	os.MkdirAll(filepath.Join(www, "static"), 0o755)
	os.WriteFile(filepath.Join(www, "items.json"), doc, 0o644)
	var pre bytes.Buffer
	zw := gzip.NewWriter(&pre)
	zw.Write(js)
	zw.Close()
	os.WriteFile(filepath.Join(www, "static", "app.js"), js, 0o644)
	os.WriteFile(filepath.Join(www, "static", "app.js.gz"), pre.Bytes(), 0o644)

	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, policyConfig(engine, "  - name: compress\n",
			fmt.Sprintf("  - { name: nginx, path: \"/\", backend: %q }\n", ngx.url)))
		c := newClient(t)
		resp, body := czGet(t, c, "GET", g.URL()+"/items.json", "Accept-Encoding", "br")
		dec, err := io.ReadAll(czDecode(t, resp.Header.Get("Content-Encoding"), bytes.NewReader(body)))
		etag := resp.Header.Get("ETag")
		if resp.Header.Get("Content-Encoding") != "br" || err != nil || !bytes.Equal(dec, doc) {
			t.Fatalf("items.json: %v, %v, %d bytes decoded", resp.Header, err, len(dec))
		}
		if !strings.HasPrefix(etag, `W/"`) || resp.Header.Get("Accept-Ranges") != "" || resp.Header.Get("Last-Modified") == "" {
			t.Fatalf("items.json head: %v", resp.Header)
		}
		resp, _ = czGet(t, c, "GET", g.URL()+"/items.json", "Accept-Encoding", "br", "If-None-Match", etag)
		if resp.StatusCode != http.StatusNotModified || resp.Header.Get("Content-Encoding") != "" {
			t.Fatalf("revalidation with %s: %d %v", etag, resp.StatusCode, resp.Header)
		}
		resp, body = czGet(t, c, "GET", g.URL()+"/items.json", "Accept-Encoding", "br", "Range", "bytes=100-199")
		if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, doc[100:200]) {
			t.Fatalf("range: %d %v %q", resp.StatusCode, resp.Header, body)
		}
		resp, body = czGet(t, c, "GET", g.URL()+"/static/app.js", "Accept-Encoding", "gzip, br")
		if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(body, pre.Bytes()) {
			t.Fatalf("gzip_static file: Content-Encoding %q, %d bytes (the stored file has %d)", resp.Header.Get("Content-Encoding"), len(body), pre.Len())
		}
		resp, body = czGet(t, c, "HEAD", g.URL()+"/items.json", "Accept-Encoding", "gzip")
		if resp.Header.Get("Content-Encoding") != "" || resp.ContentLength != int64(len(doc)) || len(body) != 0 {
			t.Fatalf("HEAD: %v", resp.Header)
		}
	})
}

// czRSS returns the gateway's resident set high-water mark (VmHWM) in
// bytes.
func czRSS(t *testing.T, g *gateway) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestCompressStreaming: large bodies stream (the gateway's peak RSS does
// not grow with an 8 MiB body, the first bytes reach the client while the
// backend holds the rest), server-sent events arrive one by one, and a
// client that leaves ends the backend's request.
func TestCompressStreaming(t *testing.T) {
	chunk := czJSON(64 << 10)
	const total = 8 << 20
	release := make(chan struct{}, 1)
	left := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for n := 0; n < total; n += len(chunk) {
			if n == total/2 && r.URL.Query().Get("hold") != "" {
				w.(http.Flusher).Flush()
				<-release
			}
			w.Write(chunk)
		}
	})
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(chunk[:8<<10])
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "id: %d\ndata: {\"n\":%d}\n\n", i, i)
			w.(http.Flusher).Flush()
			select {
			case <-release: // the client read the event
			case <-time.After(10 * time.Second):
				return
			}
		}
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		defer func() { left <- struct{}{} }()
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	be := newBackend(t, mux.ServeHTTP)
	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, policyConfig(engine, "  - name: compress\n",
			fmt.Sprintf("  - { name: api, path: \"/\", backend: %q }\n", be.URL)))
		c := newClient(t)
		fetch := func(path, coding string) *http.Response {
			req, _ := http.NewRequest("GET", g.URL()+path, nil)
			req.Header.Set("Accept-Encoding", coding)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			if resp.Header.Get("Content-Encoding") != coding {
				t.Fatalf("%s: Content-Encoding %q", path, resp.Header.Get("Content-Encoding"))
			}
			return resp
		}

		t.Run("8 MiB", func(t *testing.T) {
			for _, coding := range []string{"gzip", "zstd", "br"} {
				io.Copy(io.Discard, fetch("/small", coding).Body) // the encoders exist
			}
			before := czRSS(t, g)
			for _, coding := range []string{"gzip", "zstd", "br"} {
				n, err := io.Copy(io.Discard, czDecode(t, coding, fetch("/big", coding).Body))
				if err != nil || n != total {
					t.Fatalf("%s: %d bytes decoded, %v", coding, n, err)
				}
			}
			grew := czRSS(t, g) - before
			t.Logf("%s: gateway peak RSS %d KiB before, +%d KiB after three 8 MiB compressed responses", engine, before>>10, grew>>10)
			if grew > total {
				t.Fatalf("the gateway's peak RSS grew by %d bytes for an %d-byte body: it is held, not streamed", grew, total)
			}
		})

		t.Run("first bytes before the backend finishes", func(t *testing.T) {
			r := czDecode(t, "gzip", fetch("/big?hold=1", "gzip").Body)
			if _, err := io.ReadFull(r, make([]byte, total/4)); err != nil {
				t.Fatalf("reading the first quarter while the backend holds the second half: %v", err)
			}
			release <- struct{}{}
			if n, err := io.Copy(io.Discard, r); err != nil || n != total-total/4 {
				t.Fatalf("rest: %d, %v", n, err)
			}
		})

		t.Run("server-sent events", func(t *testing.T) {
			events := bufio.NewReader(czDecode(t, "zstd", fetch("/events", "zstd").Body))
			for i := range 3 {
				var ev []string
				for {
					line, err := events.ReadString('\n')
					if err != nil {
						t.Fatalf("event %d: %v after %q", i, err, ev)
					}
					if line == "\n" {
						break
					}
					ev = append(ev, line)
				}
				if want := []string{fmt.Sprintf("id: %d\n", i), fmt.Sprintf("data: {\"n\":%d}\n", i)}; strings.Join(ev, "") != strings.Join(want, "") {
					t.Fatalf("event %d: %q", i, ev)
				}
				release <- struct{}{}
			}
		})

		t.Run("client leaves", func(t *testing.T) {
			conn, err := net.Dial("tcp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "GET /endless HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nX-Request-Id: czleaves"+engine+"\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil || resp.Header.Get("Content-Encoding") != "gzip" {
				t.Fatalf("%v %v", err, resp)
			}
			if _, err := io.ReadFull(czDecode(t, "gzip", resp.Body), make([]byte, 256<<10)); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			select {
			case <-left:
			case <-time.After(10 * time.Second):
				t.Fatal("the backend still streams 10 s after the client left")
			}
			line := g.accessLine(t, "czleaves"+engine)
			if e, _ := line["error"].(string); !strings.Contains(e, "client") {
				t.Errorf("access line of the cut response: %v", line)
			}
		})
	})
}

// compressPage is the page of TestBrowserCompressedJSON.
//
//go:embed browser/compress.html
var compressPage []byte

// czPageResult is what the page reports for one document.
type czPageResult struct {
	Path     string `json:"path"`
	OK       bool   `json:"ok"`
	Status   int    `json:"status"`
	Encoding string `json:"encoding"`
	Check    string `json:"check"`
	Items    int    `json:"items"`
	Error    string `json:"error"`
}

// TestBrowserCompressedJSON: headless Chromium loads a page through the
// gateway that fetches JSON documents the gateway compresses with gzip and
// with brotli (one route each), and parses them: the page reads the
// backend's values, and the bytes on the wire were compressed.
func TestBrowserCompressedJSON(t *testing.T) {
	bin := chromiumBinary(t)
	var doc bytes.Buffer
	doc.WriteString(`{"check":"read through the gateway","items":[`)
	for i := range 2000 {
		if i > 0 {
			doc.WriteByte(',')
		}
		fmt.Fprintf(&doc, `{"id":%d,"label":"item %d"}`, i, i)
	}
	doc.WriteString("]}")
	reports := make(chan string, 4)
	mux := http.NewServeMux()
	mux.HandleFunc("/page/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(compressPage)
	})
	mux.HandleFunc("/page/report", func(w http.ResponseWriter, r *http.Request) {
		reports <- r.URL.Query().Get("result")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/data.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc.Bytes())
	})
	be := newBackend(t, mux.ServeHTTP)
	forEachEngine(t, func(t *testing.T, engine string) {
		g := startGateway(t, engine, policyConfig(engine, "", fmt.Sprintf(`  - { name: page, path: "/page", backend: %[1]q }
  - name: gz
    path: "/gz"
    strip_prefix: true
    backend: %[1]q
    middlewares: [ { name: compress, encodings: [gzip] } ]
  - name: br
    path: "/br"
    strip_prefix: true
    backend: %[1]q
    middlewares: [ { name: compress, encodings: [br] } ]
`, be.URL)))
		tap := newBrowserTap(t, g.addr)
		run := startChromium(t, bin, "http://"+tap.Addr()+"/page/?paths=/gz/data.json,/br/data.json")
		var raw string
		select {
		case raw = <-reports:
		case <-run.exited:
			t.Fatalf("chromium exited (%s) without the page reporting:\n%s", run.result(), run.stderr.String())
		}
		var res []czPageResult
		if err := json.Unmarshal([]byte(raw), &res); err != nil || len(res) != 2 {
			t.Fatalf("the page reported %q (%v)", raw, err)
		}
		for i, want := range []string{"gzip", "br"} {
			r := res[i]
			if !r.OK || r.Status != 200 || r.Check != "read through the gateway" || r.Items != 2000 {
				t.Errorf("%s: the page read %+v", r.Path, r)
			}
			if r.Encoding != want {
				t.Errorf("%s: the page saw Content-Encoding %q, want %q", r.Path, r.Encoding, want)
			}
			xs := tap.find("GET", r.Path, "")
			if len(xs) != 1 || xs[0].resp == nil || xs[0].resp.Header.Get("Content-Encoding") != want {
				t.Fatalf("%s on the wire: %s", r.Path, browserTapSummary(xs))
			}
			if ae := xs[0].req.Header.Get("Accept-Encoding"); !strings.Contains(ae, want) {
				t.Errorf("%s: Chromium sent Accept-Encoding %q", r.Path, ae)
			}
			line := g.accessLine(t, xs[0].resp.Header.Get("X-Request-Id"))
			if out, _ := line["bytes_out"].(float64); out <= 0 || int(out) >= doc.Len()/4 {
				t.Errorf("%s: %v bytes sent for a %d-byte document", r.Path, line["bytes_out"], doc.Len())
			}
		}
	})
}
