package observe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestAccessGRPCStatus: the access line of a gRPC call carries
// grpc_status as a number (JSON) or a value (text); another request's
// line has no such field.
func TestAccessGRPCStatus(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		l, err := NewLogger(&buf, LogOptions{Format: format, Access: true})
		if err != nil {
			t.Fatal(err)
		}
		e := sampleEntry()
		e.GRPCStatus = "14"
		l.Access(e)
		l.Access(sampleEntry())
		l.Close()
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s: %d lines", format, len(lines))
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["grpc_status"] != float64(14) {
				t.Errorf("json line %s (%v)", lines[0], err)
			}
		} else if !strings.Contains(lines[0], " grpc_status=14") {
			t.Errorf("text line %s", lines[0])
		}
		if strings.Contains(lines[1], "grpc_status") {
			t.Errorf("%s: a line without gRPC has grpc_status: %s", format, lines[1])
		}
	}
}
