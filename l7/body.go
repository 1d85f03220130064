package l7

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

var (
	errBadChunk       = errors.New("malformed chunked encoding")
	errTrailerTooBig  = errors.New("trailer section too large")
	errBodyIncomplete = errors.New("body ended early")
	errBodyTimeout    = errors.New("body read timed out")
)

// maxChunkLine bounds a chunk-size line (size plus extensions).
const maxChunkLine = 4096

// bodyReader yields a message body from a bufConn without copying: next
// returns slices of the connection's read buffer, valid until the next
// call. It decodes chunked framing and collects trailers.
type bodyReader struct {
	src    *bufConn
	kind   bodyKind
	remain int64 // bytes left: of the body (length) or of the chunk (chunked)
	state  uint8
	n      int64 // body bytes delivered
	done   bool

	// inactivity bounds the wait between two reads of conn (0: the
	// caller keeps the deadline); aborted ends a wait for good (see
	// abort).
	inactivity time.Duration
	conn       net.Conn
	aborted    atomic.Bool

	trailers []hfield
}

const (
	chunkSize = iota
	chunkData
	chunkDataCRLF
	chunkTrailers
)

func (br *bodyReader) init(src *bufConn, kind bodyKind, length int64) {
	trailers := br.trailers[:0]
	*br = bodyReader{src: src, kind: kind, remain: length, trailers: trailers}
	if kind == bodyNone || kind == bodyLength && length == 0 {
		br.done = true
	}
}

// fill reads more into the source. With an inactivity bound, the
// deadline is re-armed (lazily, see lazyDeadline) before each read, so it
// fires that long after the last data, within the slack.
func (br *bodyReader) fill() error {
	if br.conn != nil && br.inactivity > 0 {
		if err := br.src.rdl.ensureRead(br.conn, time.Now().Add(br.inactivity), deadlineSlack(br.inactivity)); err != nil {
			return err
		}
		// Checked after arming: an abort's past deadline is either seen
		// here or set after the re-arm above.
		if br.aborted.Load() {
			return errBodyTimeout
		}
	}
	err := br.src.fill()
	if isTimeout(err) {
		return errBodyTimeout
	}
	return err
}

// abort makes the reader's current and later reads fail: conn's deadline
// is put in the past and no longer re-armed.
func (br *bodyReader) abort(conn net.Conn) {
	br.aborted.Store(true)
	conn.SetReadDeadline(time.Unix(1, 0))
}

// next returns the next piece of body data, or io.EOF after the last.
func (br *bodyReader) next() ([]byte, error) {
	if br.done {
		return nil, io.EOF
	}
	switch br.kind {
	case bodyLength:
		return br.nextLength()
	case bodyUntilClose:
		return br.nextUntilClose()
	case bodyChunked:
		return br.nextChunked()
	}
	br.done = true
	return nil, io.EOF
}

// finished reports whether the whole body has been read.
func (br *bodyReader) finished() bool { return br.done }

// pending reports whether next can make progress without reading from
// the connection. The proxy flushes what it relayed before a read would
// block, so streamed responses reach the client as they are produced.
func (br *bodyReader) pending() bool {
	if br.done {
		return true
	}
	buf := br.src.buffered()
	switch {
	case len(buf) == 0:
		return false
	case br.kind != bodyChunked:
		return true
	}
	switch br.state {
	case chunkData:
		return true
	case chunkDataCRLF:
		return len(buf) >= 2 && bytes.IndexByte(buf[2:], '\n') >= 0
	default:
		return bytes.IndexByte(buf, '\n') >= 0
	}
}

func (br *bodyReader) nextLength() ([]byte, error) {
	if len(br.src.buffered()) == 0 {
		if err := br.fill(); err != nil {
			if isConnGone(err) {
				return nil, errBodyIncomplete
			}
			return nil, err
		}
	}
	buf := br.src.buffered()
	if int64(len(buf)) > br.remain {
		buf = buf[:br.remain]
	}
	br.src.consume(len(buf))
	br.remain -= int64(len(buf))
	br.n += int64(len(buf))
	if br.remain == 0 {
		br.done = true
	}
	return buf, nil
}

func (br *bodyReader) nextUntilClose() ([]byte, error) {
	if len(br.src.buffered()) == 0 {
		if err := br.fill(); err != nil {
			if isConnGone(err) {
				br.done = true
				return nil, io.EOF
			}
			return nil, err
		}
	}
	buf := br.src.buffered()
	br.src.consume(len(buf))
	br.n += int64(len(buf))
	return buf, nil
}

func (br *bodyReader) nextChunked() ([]byte, error) {
	for {
		buf := br.src.buffered()
		switch br.state {
		case chunkSize:
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				if len(buf) > maxChunkLine {
					return nil, errBadChunk
				}
				if err := br.fillChunked(); err != nil {
					return nil, err
				}
				continue
			}
			if i == 0 || buf[i-1] != '\r' {
				return nil, errBadChunk
			}
			size, ok := parseChunkSize(buf[:i-1])
			if !ok {
				return nil, errBadChunk
			}
			br.src.consume(i + 1)
			if size == 0 {
				br.state = chunkTrailers
				continue
			}
			br.remain = size
			br.state = chunkData
		case chunkData:
			if len(buf) == 0 {
				if err := br.fillChunked(); err != nil {
					return nil, err
				}
				continue
			}
			if int64(len(buf)) > br.remain {
				buf = buf[:br.remain]
			}
			br.src.consume(len(buf))
			br.remain -= int64(len(buf))
			br.n += int64(len(buf))
			if br.remain == 0 {
				br.state = chunkDataCRLF
			}
			return buf, nil
		case chunkDataCRLF:
			if len(buf) < 2 {
				if err := br.fillChunked(); err != nil {
					return nil, err
				}
				continue
			}
			if buf[0] != '\r' || buf[1] != '\n' {
				return nil, errBadChunk
			}
			br.src.consume(2)
			br.state = chunkSize
		case chunkTrailers:
			fields, off, err := parseFields(buf, 0, br.trailers[:0])
			if err == errNeedMore {
				if len(buf) > maxChunkLine*4 {
					return nil, errTrailerTooBig
				}
				if err := br.fillChunked(); err != nil {
					return nil, err
				}
				continue
			}
			if err != nil {
				return nil, errBadChunk
			}
			for i := range fields {
				switch classify(fields[i].name) {
				case hContentLength, hTransferEncoding, hHost, hConnection, hTrailer, hTE, hKeepAlive:
					fields[i].skip = true
				}
			}
			br.trailers = fields
			// Trailers point into the buffer, which stays intact until the
			// next read; the caller forwards them before that.
			br.src.consume(off)
			br.done = true
			return nil, io.EOF
		}
	}
}

func (br *bodyReader) fillChunked() error {
	if err := br.fill(); err != nil {
		if isConnGone(err) {
			return errBodyIncomplete
		}
		return err
	}
	return nil
}

// parseChunkSize parses "HEX[;ext...]". Extensions are validated loosely
// (no CTLs) and ignored.
func parseChunkSize(line []byte) (int64, bool) {
	end := len(line)
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		if !fieldValueOK(line[i:]) {
			return 0, false
		}
		end = i
	}
	hex := line[:end]
	for len(hex) > 0 && (hex[len(hex)-1] == ' ' || hex[len(hex)-1] == '\t') {
		hex = hex[:len(hex)-1]
	}
	if len(hex) == 0 || len(hex) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range hex {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}

// appendChunkHeader appends "HEX\r\n".
func appendChunkHeader(dst []byte, n int) []byte {
	const digits = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[n&15]
		n >>= 4
		if n == 0 {
			break
		}
	}
	dst = append(dst, tmp[i:]...)
	return append(dst, '\r', '\n')
}
