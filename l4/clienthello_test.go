package l4

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// recordConn is a net.Conn that keeps what is written to it and reads
// from in: enough for crypto/tls to send or read a ClientHello.
type recordConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	if c.in == nil {
		return 0, io.EOF
	}
	return c.in.Read(p)
}
func (c *recordConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *recordConn) Close() error                     { return nil }
func (c *recordConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *recordConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *recordConn) SetDeadline(time.Time) error      { return nil }
func (c *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

// clientHello returns the records crypto/tls's client sends first for
// serverName ("" for none).
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	c := &recordConn{}
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: serverName == "", NextProtos: []string{"h2", "http/1.1"}}
	if err := tls.Client(c, cfg).Handshake(); err == nil {
		t.Fatal("handshake without a server succeeded")
	}
	return c.out.Bytes()
}

// refragment cuts the handshake bytes of TLS records into records of at
// most size bytes each.
func refragment(t testing.TB, records []byte, size int) []byte {
	t.Helper()
	var payload []byte
	for len(records) > 0 {
		n := int(records[3])<<8 | int(records[4])
		payload = append(payload, records[5:5+n]...)
		records = records[5+n:]
	}
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

// stdlibServerName is the server name crypto/tls's server sees in data,
// and whether it got as far as reading a ClientHello.
func stdlibServerName(data []byte) (string, bool) {
	var name string
	var seen bool
	stop := errors.New("stop")
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, seen = h.ServerName, true
		return nil, stop
	}}
	tls.Server(&recordConn{in: bytes.NewReader(data)}, cfg).Handshake()
	return name, seen
}

func TestReadClientHello(t *testing.T) {
	hello := clientHello(t, "DB.Example.com")
	noSNI := clientHello(t, "")
	tests := []struct {
		name   string
		in     []byte
		sni    string
		reason string
	}{
		{name: "one record", in: hello, sni: "db.example.com"},
		{name: "no server name", in: noSNI, sni: ""},
		{name: "one-byte records", in: refragment(t, hello, 1), sni: "db.example.com"},
		{name: "seven-byte records", in: refragment(t, hello, 7), sni: "db.example.com"},
		{name: "plain HTTP", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), reason: HelloNotTLS},
		{name: "SSH", in: []byte("SSH-2.0-OpenSSH_9.2\r\n"), reason: HelloNotTLS},
		{name: "empty", in: nil, reason: HelloClientClosed},
		{name: "cut in the header", in: hello[:3], reason: HelloClientClosed},
		{name: "cut in the body", in: hello[:len(hello)-1], reason: HelloClientClosed},
		{name: "zero-length record", in: append([]byte{22, 3, 1, 0, 0}, hello...), reason: HelloMalformed},
		{name: "oversized record", in: []byte{22, 3, 1, 0x40, 0x01}, reason: HelloMalformed},
		{name: "alert inside the hello", in: append(refragment(t, hello, 10)[:15], 21, 3, 1, 0, 2, 1, 0), reason: HelloMalformed},
		{name: "not a ClientHello", in: []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, reason: HelloMalformed},
		{name: "hello over 64 KiB", in: []byte{22, 3, 1, 0, 4, 1, 1, 0, 1}, reason: HelloTooLarge},
		{name: "hello body truncated", in: []byte{22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3}, reason: HelloMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if tt.reason == "" {
				in = append(bytes.Clone(in), "after"...) // not read
			}
			r := bytes.NewReader(in)
			raw, sni, err := readClientHello(r)
			if tt.reason != "" {
				var he *helloError
				if !errors.As(err, &he) || he.reason != tt.reason {
					t.Fatalf("err = %v, want reason %s", err, tt.reason)
				}
				return
			}
			if err != nil || sni != tt.sni {
				t.Fatalf("sni %q, err %v; want %q", sni, err, tt.sni)
			}
			if !bytes.Equal(raw, tt.in) {
				t.Fatalf("raw is %d bytes, want the %d of the hello", len(raw), len(tt.in))
			}
		})
	}
}

func TestParseServerNameStrict(t *testing.T) {
	// A hello whose server_name extension is built by hand.
	build := func(ext []byte) []byte {
		body := append(make([]byte, 34), 0, 0, 2, 0x13, 0x01, 1, 0)
		body = append(body, byte(len(ext)>>8), byte(len(ext)))
		return append(body, ext...)
	}
	sniExt := func(entries ...[]byte) []byte {
		var list []byte
		for _, e := range entries {
			list = append(list, e...)
		}
		data := append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)
		return append([]byte{0, 0, byte(len(data) >> 8), byte(len(data))}, data...)
	}
	host := func(typ byte, name string) []byte {
		return append([]byte{typ, 0, byte(len(name))}, name...)
	}
	tests := []struct {
		name string
		ext  []byte
		want string
		ok   bool
	}{
		{"one name", sniExt(host(0, "A.example.com")), "a.example.com", true},
		{"unknown name type skipped", sniExt(host(7, "x"), host(0, "b.example.com")), "b.example.com", true},
		{"two host names", sniExt(host(0, "a.example.com"), host(0, "b.example.com")), "", false},
		{"extension twice", append(sniExt(host(0, "a.example.com")), sniExt(host(0, "b.example.com"))...), "", false},
		{"trailing dot", sniExt(host(0, "a.example.com.")), "", false},
		{"empty name", sniExt(host(0, "")), "", false},
		{"empty list", sniExt(), "", false},
		{"truncated extension", []byte{0, 0, 0, 9, 0}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := build(tt.ext)
			got, err := parseClientHello(body)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parseClientHello = %q, %v; want %q, ok %v", got, err, tt.want, tt.ok)
			}
			// crypto/tls agrees on every case.
			msg := append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
			rec := append([]byte{22, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
			name, seen := stdlibServerName(rec)
			if seen != tt.ok || strings.ToLower(name) != tt.want {
				t.Fatalf("crypto/tls: %q, read %v; want %q, %v", name, seen, tt.want, tt.ok)
			}
		})
	}
}

// onlyHandshakeRecords reports whether data is a run of handshake records
// (the last one possibly cut): crypto/tls's server skips warning alerts
// before the hello, which the gateway treats as a malformed hello.
func onlyHandshakeRecords(data []byte) bool {
	for len(data) >= 5 {
		if data[0] != recordTypeHandshake {
			return false
		}
		n := int(data[3])<<8 | int(data[4])
		data = data[min(len(data), 5+n):]
	}
	return true
}

// FuzzClientHello checks that readClientHello never panics, never reads
// past the record completing a hello, and finds the server name
// crypto/tls's server finds in every hello that server accepts.
func FuzzClientHello(f *testing.F) {
	for _, name := range []string{"db.example.com", "", "xn--bcher-kva.example", strings.Repeat("a", 200) + ".example.com"} {
		h := clientHello(f, name)
		f.Add(h)
		f.Add(refragment(f, h, 3))
		f.Add(refragment(f, h, 100))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, sni, err := readClientHello(bytes.NewReader(data))
		if !bytes.HasPrefix(data, raw) {
			t.Fatalf("raw is not a prefix of the input")
		}
		if err == nil && sni != strings.ToLower(sni) {
			t.Fatalf("server name %q not lower-cased", sni)
		}
		var he *helloError
		if err != nil && !errors.As(err, &he) {
			t.Fatalf("error %v has no reason", err)
		}
		name, seen := stdlibServerName(data)
		if !seen || !onlyHandshakeRecords(data) {
			return
		}
		if err != nil || sni != strings.ToLower(name) {
			t.Fatalf("crypto/tls reads server name %q; readClientHello: %q, %v", name, sni, err)
		}
	})
}
