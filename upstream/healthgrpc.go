package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"golang.org/x/net/http2"
)

// Health probes over HTTP/2: HTTPProber with H2 set, and GRPCProber, the
// standard grpc.health.v1 Health/Check call. Each probe opens its own
// connection (h2c, or TLS with ALPN h2) and closes it, as HTTP/1.1 probes
// do, so a probe never rides on a connection that requests keep alive.

// h2ProbeClient returns a client that speaks HTTP/2 with prior knowledge
// (cfg nil) or over TLS with cfg, and the function that closes its
// connection.
func h2ProbeClient(cfg *tls.Config) (*http.Client, func()) {
	if cfg != nil {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{"h2"}
	}
	tr := &http2.Transport{
		AllowHTTP:          true,
		DisableCompression: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || cfg == nil {
				return c, err
			}
			tc := tls.Client(c, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			return tc, nil
		},
	}
	client := &http.Client{Transport: tr, CheckRedirect: defaultProbeClient.CheckRedirect}
	return client, tr.CloseIdleConnections
}

// GRPCProber checks a backend with the grpc.health.v1 Health/Check call:
// the backend is healthy when it answers SERVING for Service ("" asks
// about the server as a whole).
type GRPCProber struct {
	Service string
	// TLS returns the TLS client configuration of an https:// backend
	// (nil for the others, which are spoken to with h2c).
	TLS func(b *Backend) *tls.Config
}

// grpcServing is grpc.health.v1.HealthCheckResponse.SERVING.
const grpcServing = 1

// Probe implements Prober.
func (p GRPCProber) Probe(ctx context.Context, b *Backend) error {
	scheme, cfg := "http", (*tls.Config)(nil)
	if b.Scheme == "https" && p.TLS != nil {
		scheme, cfg = "https", p.TLS(b)
	}
	client, done := h2ProbeClient(cfg)
	defer done()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+b.Addr+"/grpc.health.v1.Health/Check",
		bytes.NewReader(healthRequest(p.Service)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", "RustyGate-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, probeBodyLimit))
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("unexpected status %d", resp.StatusCode)
	}
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status")
	}
	if st != "0" {
		return fmt.Errorf("grpc-status %s: %s", st, resp.Trailer.Get("Grpc-Message")+resp.Header.Get("Grpc-Message"))
	}
	serving, err := healthStatus(body)
	if err != nil {
		return err
	}
	if serving != grpcServing {
		return fmt.Errorf("health status %d, not SERVING", serving)
	}
	return nil
}

// String describes the settings that identify the prober.
func (p GRPCProber) String() string { return "grpc health " + strconv.Quote(p.Service) }

// healthRequest is a gRPC frame holding HealthCheckRequest{service}.
func healthRequest(service string) []byte {
	msg := []byte{}
	if service != "" {
		msg = append(msg, 0x0a) // field 1, length-delimited
		msg = binary.AppendUvarint(msg, uint64(len(service)))
		msg = append(msg, service...)
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	return append(frame, msg...)
}

var errHealthFrame = errors.New("malformed grpc health response")

// healthStatus reads HealthCheckResponse.status from one gRPC frame.
func healthStatus(frame []byte) (uint64, error) {
	if len(frame) < 5 || frame[0] != 0 {
		return 0, errHealthFrame
	}
	n := binary.BigEndian.Uint32(frame[1:5])
	msg := frame[5:]
	if uint32(len(msg)) != n {
		return 0, errHealthFrame
	}
	var status uint64
	for len(msg) > 0 {
		key, k := binary.Uvarint(msg)
		if k <= 0 {
			return 0, errHealthFrame
		}
		msg = msg[k:]
		switch key & 7 {
		case 0:
			v, k := binary.Uvarint(msg)
			if k <= 0 {
				return 0, errHealthFrame
			}
			msg = msg[k:]
			if key>>3 == 1 {
				status = v
			}
		case 2:
			l, k := binary.Uvarint(msg)
			if k <= 0 || uint64(len(msg)-k) < l {
				return 0, errHealthFrame
			}
			msg = msg[k+int(l):]
		default:
			return 0, errHealthFrame
		}
	}
	return status, nil
}
