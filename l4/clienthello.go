package l4

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Why a ClientHello could not be read: stable values, the reason label of
// rustygate_l4_tls_hello_failures_total and of the connection log line.
const (
	// HelloNotTLS: the first bytes are not a TLS handshake record (plain
	// HTTP, SSH, garbage, an SSLv2 hello).
	HelloNotTLS = "not_tls"
	// HelloMalformed: TLS records that do not carry a well-formed
	// ClientHello.
	HelloMalformed = "malformed"
	// HelloTooLarge: a ClientHello over maxHelloMessage bytes.
	HelloTooLarge = "too_large"
	// HelloTimeout: the hello was not complete within handshake_timeout.
	HelloTimeout = "timeout"
	// HelloClientClosed: the client closed or reset before its hello was
	// complete.
	HelloClientClosed = "client_closed"
)

const (
	recordTypeHandshake  = 22
	handshakeClientHello = 1
	extensionServerName  = 0
	// maxRecordPayload is TLS's bound on a plaintext record.
	maxRecordPayload = 16 << 10
	// maxHelloMessage bounds the ClientHello message, as crypto/tls's
	// server does: post-quantum key shares make hellos of a few KiB, and
	// every hello a Go TLS server takes passes.
	maxHelloMessage = 64 << 10
	// maxHelloBytes bounds the records carrying it, headers included: a
	// hello cut into tiny records costs 5 bytes a record.
	maxHelloBytes = 2 * maxHelloMessage
)

// helloError is a failed ClientHello read; reason is one of the Hello*
// constants.
type helloError struct {
	reason string
	err    error
}

func (e *helloError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *helloError) Unwrap() error { return e.err }

func helloErr(reason, format string, args ...any) *helloError {
	return &helloError{reason: reason, err: fmt.Errorf(format, args...)}
}

// readClientHello reads from r the TLS records that carry the client's
// ClientHello, and nothing past the record that completes it. It returns
// every byte read, which the backend must receive first, and the server
// name of the SNI extension, lower-cased ("" without one). Fragmentation
// into several records and several TCP segments is allowed.
func readClientHello(r io.Reader) (raw []byte, sni string, err error) {
	var msg []byte
	need := -1 // length of the handshake message with its header, once known
	for need < 0 || len(msg) < need {
		start := len(raw)
		if start > maxHelloBytes {
			return raw, "", helloErr(HelloTooLarge, "ClientHello records over %d bytes", maxHelloBytes)
		}
		if start == 0 {
			// A client that speaks something else is told apart by its
			// first byte, whatever it sends after it.
			if raw, err = readFullAppend(r, raw, 1); err != nil {
				return raw, "", readErr(err)
			}
			if raw[0] != recordTypeHandshake {
				return raw, "", helloErr(HelloNotTLS, "first byte %q is not a TLS handshake record", raw)
			}
		}
		if raw, err = readFullAppend(r, raw, 5-(len(raw)-start)); err != nil {
			return raw, "", readErr(err)
		}
		hdr := raw[start:]
		if hdr[0] != recordTypeHandshake || hdr[1] > 0x0f {
			if start == 0 {
				return raw, "", helloErr(HelloNotTLS, "first bytes %q are not a TLS handshake record", hdr)
			}
			return raw, "", helloErr(HelloMalformed, "record of type %d inside the ClientHello", hdr[0])
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 || n > maxRecordPayload {
			return raw, "", helloErr(HelloMalformed, "handshake record of %d bytes", n)
		}
		if raw, err = readFullAppend(r, raw, n); err != nil {
			return raw, "", readErr(err)
		}
		msg = append(msg, raw[len(raw)-n:]...)
		if need < 0 && len(msg) >= 4 {
			if msg[0] != handshakeClientHello {
				return raw, "", helloErr(HelloMalformed, "handshake message of type %d, not a ClientHello", msg[0])
			}
			size := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
			if size > maxHelloMessage {
				return raw, "", helloErr(HelloTooLarge, "ClientHello of %d bytes (at most %d)", size, maxHelloMessage)
			}
			need = 4 + size
		}
	}
	sni, err = parseClientHello(msg[4:need])
	if err != nil {
		return raw, "", &helloError{reason: HelloMalformed, err: err}
	}
	return raw, sni, nil
}

// readFullAppend reads exactly n more bytes from r onto buf.
func readFullAppend(r io.Reader, buf []byte, n int) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, n)...)
	got, err := io.ReadFull(r, buf[start:])
	return buf[:start+got], err
}

// readErr classifies a read that ended the hello early.
func readErr(err error) *helloError {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &helloError{reason: HelloTimeout, err: err}
	}
	return &helloError{reason: HelloClientClosed, err: err}
}

// parseClientHello returns the host name of a ClientHello body's
// server_name extension (RFC 6066), lower-cased; "" without one. It
// refuses what crypto/tls's server refuses in the fields it reads: a
// truncated field, trailing bytes, an extension twice, two host names,
// an empty name or one with a trailing dot.
func parseClientHello(body []byte) (string, error) {
	c := cursor(body)
	var sessionID, suites, compression, exts cursor
	if !c.skip(2+32) || !c.vec8(&sessionID) || !c.vec16(&suites) || len(suites)%2 != 0 || !c.vec8(&compression) {
		return "", errors.New("truncated ClientHello")
	}
	if len(c) == 0 {
		return "", nil // no extensions
	}
	if !c.vec16(&exts) || len(c) != 0 {
		return "", errors.New("bad extensions block")
	}
	seen := map[uint16]bool{}
	var sni string
	for len(exts) > 0 {
		var typ uint16
		var data cursor
		if !exts.u16(&typ) || !exts.vec16(&data) {
			return "", errors.New("truncated extension")
		}
		if seen[typ] {
			return "", fmt.Errorf("extension %d twice", typ)
		}
		seen[typ] = true
		if typ == extensionServerName {
			var err error
			if sni, err = parseServerName(data); err != nil {
				return "", err
			}
		}
	}
	return strings.ToLower(sni), nil
}

// parseServerName returns the host_name of a server_name extension.
func parseServerName(data cursor) (string, error) {
	var list cursor
	if !data.vec16(&list) || len(list) == 0 {
		return "", errors.New("empty server_name list")
	}
	var host string
	for len(list) > 0 {
		var typ uint8
		var name cursor
		if !list.u8(&typ) || !list.vec16(&name) || len(name) == 0 {
			return "", errors.New("bad server_name entry")
		}
		if typ != 0 {
			continue
		}
		if host != "" {
			return "", errors.New("two host names in server_name")
		}
		host = string(name)
		if strings.HasSuffix(host, ".") {
			return "", errors.New("server name with a trailing dot")
		}
	}
	return host, nil
}

// cursor reads big-endian TLS fields from the front of a byte slice.
type cursor []byte

func (c *cursor) skip(n int) bool {
	if len(*c) < n {
		return false
	}
	*c = (*c)[n:]
	return true
}

func (c *cursor) u8(v *uint8) bool {
	if len(*c) < 1 {
		return false
	}
	*v = (*c)[0]
	*c = (*c)[1:]
	return true
}

func (c *cursor) u16(v *uint16) bool {
	if len(*c) < 2 {
		return false
	}
	*v = uint16((*c)[0])<<8 | uint16((*c)[1])
	*c = (*c)[2:]
	return true
}

// vec8 and vec16 read a vector with a 1- or 2-byte length prefix.
func (c *cursor) vec8(out *cursor) bool {
	var n uint8
	return c.u8(&n) && c.take(int(n), out)
}

func (c *cursor) vec16(out *cursor) bool {
	var n uint16
	return c.u16(&n) && c.take(int(n), out)
}

func (c *cursor) take(n int, out *cursor) bool {
	if len(*c) < n {
		return false
	}
	*out = (*c)[:n]
	*c = (*c)[n:]
	return true
}
