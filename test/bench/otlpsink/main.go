// Command otlpsink is the OTLP/HTTP trace receiver of test/bench/peer.sh
// (the rg_tracing_otlp row): it accepts POST /v1/traces with a protobuf
// ExportTraceServiceRequest, decodes it and counts its spans, as a
// collector would, and answers 200 with an empty
// ExportTraceServiceResponse. GET /stats answers "spans N exports M
// bad K" (K: bodies that did not decode).
//
// By default it walks the message with protowire down to each span,
// checking the wire format of every level and each span's trace and span
// ids, without building the generated message objects: a receiver
// costing a few hundred nanoseconds per span, which on a small machine
// leaves the CPU to the gateway being measured. -full decodes into the
// generated messages (proto.Unmarshal) instead, as a collector that
// keeps them does.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync"
	"sync/atomic"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds one export's body.
const maxBody = 64 << 20

type sink struct {
	full                bool // decode with proto.Unmarshal
	spans, exports, bad atomic.Uint64
}

// count returns the number of spans in an ExportTraceServiceRequest.
func (s *sink) count(body []byte) (int, error) {
	if s.full {
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			return 0, err
		}
		n := 0
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				n += len(ss.GetSpans())
			}
		}
		return n, nil
	}
	n := 0
	// ExportTraceServiceRequest.resource_spans (1) > ResourceSpans.scope_spans
	// (2) > ScopeSpans.spans (2).
	err := walk(body, 1, func(rs []byte) error {
		return walk(rs, 2, func(ss []byte) error {
			return walk(ss, 2, func(span []byte) error {
				n++
				return checkSpan(span)
			})
		})
	})
	return n, err
}

// walk checks the wire format of msg's fields and calls sub with the
// content of each field num, a message.
func walk(msg []byte, num protowire.Number, sub func([]byte) error) error {
	for len(msg) > 0 {
		f, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		if f == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := sub(v); err != nil {
				return err
			}
			msg = msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(f, typ, msg)
		if m < 0 {
			return protowire.ParseError(m)
		}
		msg = msg[m:]
	}
	return nil
}

// checkSpan checks a Span's wire format and that it has a 16-byte trace
// id (1) and an 8-byte span id (2).
func checkSpan(span []byte) error {
	var tid, sid int
	for _, id := range []struct {
		num protowire.Number
		n   *int
	}{{1, &tid}, {2, &sid}} {
		if err := walk(span, id.num, func(v []byte) error { *id.n = len(v); return nil }); err != nil {
			return err
		}
	}
	if tid != 16 || sid != 8 {
		return fmt.Errorf("span with a %d-byte trace id and a %d-byte span id", tid, sid)
	}
	return nil
}

func (s *sink) traces(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	bp := bodies.Get().(*[]byte)
	defer bodies.Put(bp)
	body, err := readBody(r, *bp)
	*bp = body[:0]
	n := 0
	if err == nil {
		n, err = s.count(body)
	}
	if err != nil {
		s.bad.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.spans.Add(uint64(n))
	s.exports.Add(1)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// bodies are the buffers the exports are read into, reused: a collector
// that reads each export into a fresh buffer grown as it reads makes
// several copies of it and feeds the garbage collector, on the CPUs the
// gateway being measured shares.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// readBody reads r's body into buf's array (grown if needed): in one read
// of its Content-Length when it has one.
func readBody(r *http.Request, buf []byte) ([]byte, error) {
	if n := r.ContentLength; n > maxBody {
		return buf[:0], fmt.Errorf("body of %d bytes, more than %d", n, maxBody)
	} else if n >= 0 {
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		_, err := io.ReadFull(r.Body, buf)
		return buf, err
	}
	b := bytes.NewBuffer(buf[:0])
	_, err := b.ReadFrom(io.LimitReader(r.Body, maxBody+1))
	if err == nil && b.Len() > maxBody {
		err = fmt.Errorf("body of more than %d bytes", maxBody)
	}
	return b.Bytes(), err
}

func (s *sink) stats(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintf(w, "spans %d exports %d bad %d\n", s.spans.Load(), s.exports.Load(), s.bad.Load())
}

func main() {
	addr := flag.String("listen", "127.0.0.1:18130", "address to listen on")
	full := flag.Bool("full", false, "decode into the generated messages (proto.Unmarshal)")
	flag.Parse()
	s := &sink{full: *full}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", s.traces)
	mux.HandleFunc("/stats", s.stats)
	if err := http.ListenAndServe(*addr, mux); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
