package observe

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// otlpHTTPExporter posts spans to an OTLP/HTTP collector as protobuf,
// encoded by otlpEncoder into a buffer it reuses. A refusal the
// collector may lift (429, 502, 503, 504, or no answer) is retried with
// a growing delay (honouring Retry-After) until the export's context
// ends; any other status fails the export.
type otlpHTTPExporter struct {
	url     string
	headers map[string]string
	client  *http.Client

	origin *spanOrigin
	// bufs hold the encoders and buffers of the exports, reused (one
	// per export running).
	bufs sync.Pool
}

// otlpBuf is the storage of one export.
type otlpBuf struct {
	enc otlpEncoder
	b   []byte
}

var _ recordExporter = (*otlpHTTPExporter)(nil)

// maxOTLPResponse bounds the collector's answer read.
const maxOTLPResponse = 64 << 10

// newOTLPHTTPExporter returns an exporter posting to the endpoint URL
// built by otlpHTTPURL.
func newOTLPHTTPExporter(url string, headers map[string]string, origin *spanOrigin) *otlpHTTPExporter {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	return &otlpHTTPExporter{url: url, headers: headers, client: &http.Client{Transport: tr}, origin: origin}
}

// otlpHTTPURL is the URL traces are posted to: the endpoint URL (its path,
// or /v1/traces when it has none), or http(s)://host:port/v1/traces for a
// host:port endpoint, https unless insecure.
func otlpHTTPURL(ep string, insecure bool) string {
	if i := strings.Index(ep, "://"); i >= 0 {
		rest := ep[i+3:]
		if j := strings.IndexByte(rest, '/'); j < 0 || rest[j:] == "/" {
			return strings.TrimSuffix(ep, "/") + defaultOTLPPath
		}
		return ep
	}
	if insecure {
		return "http://" + ep + defaultOTLPPath
	}
	return "https://" + ep + defaultOTLPPath
}

// exportRecords implements recordExporter.
func (e *otlpHTTPExporter) exportRecords(ctx context.Context, recs []*spanRecord) error {
	if len(recs) == 0 {
		return nil
	}
	ob, _ := e.bufs.Get().(*otlpBuf)
	if ob == nil {
		ob = &otlpBuf{enc: otlpEncoder{origin: e.origin}}
	}
	defer e.bufs.Put(ob)
	ob.b = ob.enc.appendRequest(ob.b[:0], recs)
	delay := 100 * time.Millisecond
	for {
		retry, wait, err := e.post(ctx, ob.b)
		if err == nil || !retry {
			return err
		}
		if wait <= 0 {
			wait = delay
			delay = min(2*delay, 5*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("traces export: %w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// post sends body once. retry says whether sending again may succeed,
// after wait when the collector said how long.
func (e *otlpHTTPExporter) post(ctx context.Context, body []byte) (retry bool, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "rustygate-otlp-exporter")
	for k, v := range e.headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return ctx.Err() == nil, 0, fmt.Errorf("traces export: %w", err)
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxOTLPResponse))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return false, 0, nil
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		return true, wait, fmt.Errorf("traces export: %s: %s", e.url, resp.Status)
	default:
		if len(answer) > 256 {
			answer = answer[:256]
		}
		return false, 0, fmt.Errorf("traces export: %s: %s (%q)", e.url, resp.Status, answer)
	}
}

// Shutdown implements recordExporter.
func (e *otlpHTTPExporter) Shutdown(ctx context.Context) error {
	e.client.CloseIdleConnections()
	return nil
}
