package l7

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	raw := "POST /p/a?q=1 HTTP/1.1\r\nHost: ex.com:8080\r\nContent-Length: 4\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX-Keep: 2\r\nX-Forwarded-For: 1.2.3.4\r\nX-Request-Id: abc\r\n\r\nbody"
	var r request
	n, err := parseRequest([]byte(raw), &r)
	if err != nil {
		t.Fatal(err)
	}
	if raw[n:] != "body" {
		t.Fatalf("head length %d leaves %q", n, raw[n:])
	}
	if string(r.method) != "POST" || string(r.path) != "/p/a" || string(r.query) != "?q=1" || r.proto != 11 {
		t.Fatalf("request line: %q %q %q %d", r.method, r.path, r.query, r.proto)
	}
	if string(r.host) != "ex.com:8080" || r.contentLength != 4 || r.chunked || r.closeConn {
		t.Fatalf("fields: host %q cl %d chunked %v close %v", r.host, r.contentLength, r.chunked, r.closeConn)
	}
	if string(r.xff) != "1.2.3.4" || string(r.requestID) != "abc" {
		t.Fatalf("xff %q id %q", r.xff, r.requestID)
	}
	forwarded := map[string]bool{}
	for _, f := range r.fields {
		if !f.skip {
			forwarded[string(f.name)] = true
		}
	}
	for _, name := range []string{"Host", "X-Keep"} {
		if !forwarded[name] {
			t.Errorf("%s not forwarded", name)
		}
	}
	for _, name := range []string{"Connection", "X-Drop", "Content-Length", "X-Forwarded-For", "X-Request-Id"} {
		if forwarded[name] {
			t.Errorf("%s forwarded as received", name)
		}
	}
}

func TestParseRequestIncomplete(t *testing.T) {
	full := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	for i := 0; i < len(full); i++ {
		var r request
		if _, err := parseRequest([]byte(full[:i]), &r); err != errNeedMore {
			t.Fatalf("prefix %q: err %v, want errNeedMore", full[:i], err)
		}
	}
}

func TestParseResponse(t *testing.T) {
	cases := []struct {
		raw   string
		head  bool
		kind  bodyKind
		cl    int64
		close bool
		err   error
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, bodyLength, 5, false, nil},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, bodyChunked, -1, false, nil},
		{"HTTP/1.1 200 OK\r\n\r\n", false, bodyUntilClose, -1, true, nil},
		{"HTTP/1.1 204 No Content\r\n\r\n", false, bodyNone, -1, false, nil},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, bodyNone, 9, false, nil},
		{"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true, bodyNone, 9, false, nil},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false, bodyLength, 2, true, nil},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n", false, bodyLength, 2, false, nil},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", false, bodyLength, 2, false, nil},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", false, 0, 0, false, errDupContentLength},
		{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, 0, 0, false, errBadContentLength},
		{"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", false, bodyChunked, -1, true, nil},
		{"HTTP/1.1 200\r\n\r\n", false, bodyUntilClose, -1, true, nil},
		{"HTTP/1.1 20 OK\r\n\r\n", false, 0, 0, false, errBadStatusLine},
		{"HTTP/2 200 OK\r\n\r\n", false, 0, 0, false, errBadStatusLine},
		{"HTTP/1.1 200 OK\nX: y\r\n\r\n", false, 0, 0, false, errBareLF},
	}
	for _, c := range cases {
		var resp response
		_, err := parseResponse([]byte(c.raw), &resp, c.head)
		if err != c.err {
			t.Errorf("%q: err %v, want %v", c.raw, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if resp.kind != c.kind || resp.contentLength != c.cl || resp.closeConn != c.close {
			t.Errorf("%q: kind %d cl %d close %v; want %d %d %v", c.raw, resp.kind, resp.contentLength, resp.closeConn, c.kind, c.cl, c.close)
		}
	}
}

func TestHasDotSegment(t *testing.T) {
	for p, want := range map[string]bool{
		"/": false, "/a/b": false, "/.well-known/x": false, "/a..b": false, "/...": false,
		"/.": true, "/..": true, "/a/./b": true, "/a/../b": true, "/a/%2e%2e/b": true, "/a/%2E/": true, "/a/.%2e": true,
	} {
		if got := hasDotSegment([]byte(p)); got != want {
			t.Errorf("hasDotSegment(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestValidHost(t *testing.T) {
	for h, want := range map[string]bool{
		"": true, "a": true, "example.com": true, "example.com:8080": true, "127.0.0.1:80": true,
		"[::1]": true, "[::1]:8080": true, "[2001:db8::ffff:1.2.3.4]": true, "xn--nxa.example": true,
		"a_b.example": true, "a%41b": true, "example.com:": true,
		"a:b": false, "a:1:2": false, ":80": false, "a:123456": false, "user@a": false, "a b": false,
		"a/b": false, "a\"b": false, "<a>": false, "a{b}": false, "a|b": false, "a^b": false,
		"[::1": false, "[a.b]": false, "[::1]x": false, "[]": false, "[fe80::1%25eth0]": false,
		"a]": false, "a[": false, "a%4": false, "a%zz": false,
	} {
		if got := validHost([]byte(h)); got != want {
			t.Errorf("validHost(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestParseAbsoluteForm(t *testing.T) {
	cases := []struct {
		target, host, path, query string
		err                       error
	}{
		{"http://Example.com:8080/p?q=1", "Example.com:8080", "/p", "?q=1", nil},
		{"https://a.example", "a.example", "/", "", nil},
		{"http://a.example?x", "a.example", "/", "?x", nil},
		{"http://[::1]:9/x", "[::1]:9", "/x", "", nil},
		{"http://user@secure.example/", "", "", "", errUserinfo},
		{"http://@a/", "", "", "", errUserinfo},
		{"http://a\"b/", "", "", "", errBadAuthority},
		{"http://a:x/", "", "", "", errBadAuthority},
		{"http:///x", "", "", "", errBadAuthority},
		{"ftp://a/", "", "", "", errBadTarget},
	}
	for _, tc := range cases {
		var r request
		_, err := parseRequest([]byte("GET "+tc.target+" HTTP/1.1\r\nHost: other\r\n\r\n"), &r)
		if err != tc.err {
			t.Errorf("%q: err %v, want %v", tc.target, err, tc.err)
			continue
		}
		if err == nil && (string(r.host) != tc.host || !r.absolute || string(r.path) != tc.path || string(r.query) != tc.query) {
			t.Errorf("%q: host %q absolute %v path %q query %q", tc.target, r.host, r.absolute, r.path, r.query)
		}
	}
}

func TestParseDuplicateAuthorization(t *testing.T) {
	var r request
	if _, err := parseRequest([]byte("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\n\r\n"), &r); err != nil {
		t.Fatalf("one Authorization: %v", err)
	}
	_, err := parseRequest([]byte("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nAUTHORIZATION: Basic eQ==\r\n\r\n"), &r)
	if err != errDupAuthorization {
		t.Fatalf("two Authorization: err %v, want %v", err, errDupAuthorization)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	b.Run("short", func(b *testing.B) {
		benchParse(b, "GET /api/test?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
	})
	// A browser's API call with a bearer token: the field values are
	// most of the head.
	b.Run("browser", func(b *testing.B) {
		benchParse(b, "GET /api/orders?page=2 HTTP/1.1\r\nHost: api.example.com\r\n"+
			"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n"+
			"Accept: application/json, text/plain, */*\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"+
			"Origin: https://app.example.com\r\nReferer: https://app.example.com/orders\r\n"+
			"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJiZW5jaCIsImF1ZCI6ImFwaSIsImV4cCI6MTc5NjUxMjAwMH0.3yJ2Xb7yN8wQ5e0cT0kF0W6b1vK2uR9mH4pL8sD1aQc\r\n"+
			"Cookie: session=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08; theme=dark\r\n\r\n")
	})
}

func benchParse(b *testing.B, head string) {
	raw := []byte(head)
	var r request
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseRequest(raw, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParseRequest checks the parser never panics, and that whatever it
// accepts net/http also reads as a request with the same method, target
// and body framing (the parser is never looser than net/http).
func FuzzParseRequest(f *testing.F) {
	for _, v := range smugglingVectors {
		f.Add([]byte(v.raw))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r request
		n, err := parseRequest(data, &r)
		if err != nil {
			return
		}
		if n > len(data) {
			t.Fatalf("head length %d > %d", n, len(data))
		}
		hr, herr := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if herr != nil {
			if strings.Contains(herr.Error(), "too long") || strings.Contains(herr.Error(), "EOF") {
				return
			}
			t.Fatalf("accepted what net/http refuses (%v): %q", herr, data)
		}
		if hr.Method != string(r.method) {
			t.Fatalf("method %q vs net/http %q", r.method, hr.Method)
		}
		if r.chunked != (len(hr.TransferEncoding) > 0) {
			t.Fatalf("chunked %v vs net/http %v", r.chunked, hr.TransferEncoding)
		}
		if !r.chunked && r.contentLength >= 0 && hr.ContentLength != r.contentLength {
			t.Fatalf("length %d vs net/http %d", r.contentLength, hr.ContentLength)
		}
	})
}

// TestFieldValueOKEveryByte: the word-at-a-time check agrees with the
// byte-by-byte rule for every byte value at every position of values up to
// 24 bytes long, around otherwise valid text, tabs and obs-text.
func TestFieldValueOKEveryByte(t *testing.T) {
	for _, fill := range []byte{'a', '\t', 0x80, 0xff, ' '} {
		for n := 1; n <= 24; n++ {
			for pos := range n {
				for c := range 256 {
					v := bytes.Repeat([]byte{fill}, n)
					v[pos] = byte(c)
					want := (c >= 0x20 || c == '\t') && c != 0x7f
					if got := fieldValueOK(v); got != want {
						t.Fatalf("fieldValueOK(%q) = %v, want %v", v, got, want)
					}
				}
			}
		}
	}
	if !fieldValueOK(nil) {
		t.Error("an empty value was refused")
	}
}

// BenchmarkFieldValueOK checks a 160-byte bearer token value, byte by
// byte and eight bytes at a time.
func BenchmarkFieldValueOK(b *testing.B) {
	v := []byte("Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJiZW5jaCIsImF1ZCI6ImFwaSIsImV4cCI6MTc5NjUxMjAwMH0.3yJ2Xb7yN8wQ5e0cT0kF0W6b1vK2uR9mH4pL8sD1aQc")
	for _, fn := range []struct {
		name string
		f    func([]byte) bool
	}{{"bytes", fieldBytesOK}, {"words", fieldValueOK}} {
		b.Run(fn.name, func(b *testing.B) {
			b.SetBytes(int64(len(v)))
			for b.Loop() {
				if !fn.f(v) {
					b.Fatal("refused")
				}
			}
		})
	}
}
