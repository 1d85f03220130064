// Command otlpsink is the OTLP/HTTP trace receiver of test/bench/peer.sh
// (the rg_tracing_otlp row): it accepts POST /v1/traces with a protobuf
// ExportTraceServiceRequest, decodes it and counts its spans, as a
// collector would, and answers 200 with an empty
// ExportTraceServiceResponse. GET /stats answers "spans N exports M
// bad K" (K: bodies that did not decode).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync/atomic"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds one export's body.
const maxBody = 64 << 20

type sink struct {
	spans, exports, bad atomic.Uint64
}

func (s *sink) traces(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	req := &collectortrace.ExportTraceServiceRequest{}
	if err == nil {
		err = proto.Unmarshal(body, req)
	}
	if err != nil {
		s.bad.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	s.spans.Add(uint64(n))
	s.exports.Add(1)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (s *sink) stats(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintf(w, "spans %d exports %d bad %d\n", s.spans.Load(), s.exports.Load(), s.bad.Load())
}

func main() {
	addr := flag.String("listen", "127.0.0.1:18130", "address to listen on")
	flag.Parse()
	s := &sink{}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", s.traces)
	mux.HandleFunc("/stats", s.stats)
	if err := http.ListenAndServe(*addr, mux); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
