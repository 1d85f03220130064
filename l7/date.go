package l7

import (
	"net/http"
	"sync/atomic"
	"time"
)

// dateLine is a formatted "Date: ...\r\n" header line for one second.
type dateLine struct {
	sec  int64
	line []byte
}

// cachedDate holds the current second's Date line. It is formatted once
// per second by whichever response first needs it (as nginx and Envoy
// do), so writing it allocates nothing per response.
var cachedDate atomic.Pointer[dateLine]

// appendDate appends the Date header line (RFC 9110 6.6.1: an origin
// server with a clock sends one, and a proxy adds it when the backend did
// not).
func appendDate(w []byte) []byte {
	now := time.Now()
	d := cachedDate.Load()
	if d == nil || d.sec != now.Unix() {
		line := make([]byte, 0, len("Date: ")+len(http.TimeFormat)+2)
		line = append(line, "Date: "...)
		line = now.UTC().AppendFormat(line, http.TimeFormat)
		line = append(line, '\r', '\n')
		d = &dateLine{sec: now.Unix(), line: line}
		cachedDate.Store(d)
	}
	return append(w, d.line...)
}
