package upstream

import (
	"bytes"
	"testing"
)

// TestGRPCHealthMessages: the Health/Check request is the protobuf of
// HealthCheckRequest{service} in one gRPC frame, and the status of a
// response is read past unknown fields; malformed frames are errors.
func TestGRPCHealthMessages(t *testing.T) {
	if got, want := healthRequest("a.B"), []byte{0, 0, 0, 0, 5, 0x0a, 3, 'a', '.', 'B'}; !bytes.Equal(got, want) {
		t.Fatalf("request %v, want %v", got, want)
	}
	if got := healthRequest(""); !bytes.Equal(got, []byte{0, 0, 0, 0, 0}) {
		t.Fatalf("empty request %v", got)
	}
	for _, c := range []struct {
		frame  []byte
		status uint64
		ok     bool
	}{
		{[]byte{0, 0, 0, 0, 2, 0x08, 1}, 1, true},
		{[]byte{0, 0, 0, 0, 0}, 0, true},
		{[]byte{0, 0, 0, 0, 5, 0x12, 1, 'x', 0x08, 2}, 2, true},
		{[]byte{0, 0, 0, 0, 3, 0x08, 1}, 0, false},
		{[]byte{1, 0, 0, 0, 2, 0x08, 1}, 0, false},
		{[]byte{0, 0, 0, 0, 2, 0x12, 5}, 0, false},
		{[]byte{0, 0, 0}, 0, false},
	} {
		st, err := healthStatus(c.frame)
		if (err == nil) != c.ok || st != c.status {
			t.Errorf("%v: status %d err %v, want %d ok=%t", c.frame, st, err, c.status, c.ok)
		}
	}
}
