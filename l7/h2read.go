package l7

import (
	"errors"

	"golang.org/x/net/http2"
)

// readLoop reads and dispatches frames until the connection fails or
// ends. A returned ConnectionError is answered with GOAWAY by the caller.
func (hc *h2Conn) readLoop() error {
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				if err := hc.streamError(se); err != nil {
					return err
				}
				continue
			}
			if isTimeout(err) {
				hc.goAway(http2.ErrCodeNo)
				return nil
			}
			return err
		}
		if err := hc.dispatch(f); err != nil {
			return err
		}
	}
}

func (hc *h2Conn) dispatch(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return hc.onHeaders(f)
	case *http2.DataFrame:
		return hc.onData(f)
	case *http2.SettingsFrame:
		return hc.onSettings(f)
	case *http2.WindowUpdateFrame:
		return hc.onWindowUpdate(f)
	case *http2.PingFrame:
		return hc.onPing(f)
	case *http2.RSTStreamFrame:
		return hc.onReset(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return hc.streamError(http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol})
		}
		return hc.control()
	case *http2.GoAwayFrame:
		hc.startGoAway()
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // unknown frame types are ignored
}

// control pays for a control frame; a client out of budget is told to
// calm down.
func (hc *h2Conn) control() error {
	hc.mu.Lock()
	ok := hc.spend()
	hc.mu.Unlock()
	if !ok {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// streamError resets a stream; a stream error on a stream not yet opened
// marks its id as used.
func (hc *h2Conn) streamError(se http2.StreamError) error {
	hc.mu.Lock()
	if se.StreamID > hc.maxID && se.StreamID%2 == 1 {
		hc.maxID = se.StreamID
	}
	st := hc.streams[se.StreamID]
	if st != nil {
		st.cancelLocked(errStreamReset)
	}
	hc.mu.Unlock()
	if err := hc.control(); err != nil {
		return err
	}
	hc.writeReset(se.StreamID, se.Code)
	return nil
}

func (hc *h2Conn) writeReset(id uint32, code http2.ErrCode) {
	hc.withWriter(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, code) })
}

func (hc *h2Conn) onSettings(f *http2.SettingsFrame) error {
	if err := hc.control(); err != nil {
		return err
	}
	if f.IsAck() {
		return nil
	}
	hc.mu.Lock()
	err := f.ForeachSetting(hc.applySetting)
	hc.mu.Unlock()
	if err != nil {
		return err
	}
	hc.withWriter(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
	return nil
}

// applySetting applies one setting in order (mu held): two
// INITIAL_WINDOW_SIZE in one frame apply one after the other.
func (hc *h2Conn) applySetting(s http2.Setting) error {
	if err := s.Valid(); err != nil {
		return err
	}
	switch s.ID {
	case http2.SettingInitialWindowSize:
		delta := int64(s.Val) - hc.peerWin
		hc.peerWin = int64(s.Val)
		for _, st := range hc.streams {
			st.sendWin += delta
			if st.sendWin > 1<<31-1 {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			st.wakeLocked()
		}
	case http2.SettingMaxFrameSize:
		hc.peerFrame = s.Val
	case http2.SettingHeaderTableSize:
		// Responses are encoded without the dynamic table (h2stream.go).
	}
	return nil
}

func (hc *h2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	if err := hc.control(); err != nil {
		return err
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if f.StreamID == 0 {
		hc.sendWin += int64(f.Increment)
		if hc.sendWin > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		for _, st := range hc.streams {
			st.wakeLocked()
		}
		return nil
	}
	if f.StreamID > hc.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st := hc.streams[f.StreamID]
	if st == nil {
		return nil // a closed stream
	}
	st.sendWin += int64(f.Increment)
	if st.sendWin > 1<<31-1 {
		st.cancelLocked(errStreamReset)
		go hc.writeReset(f.StreamID, http2.ErrCodeFlowControl)
		return nil
	}
	st.wakeLocked()
	return nil
}

func (hc *h2Conn) onPing(f *http2.PingFrame) error {
	if err := hc.control(); err != nil {
		return err
	}
	if f.IsAck() {
		return nil
	}
	data := f.Data
	// Written by the reader itself: a client that pings without reading
	// the answers blocks its own connection, bounded by write_timeout.
	return hc.withWriter(func(fr *http2.Framer) error { return fr.WritePing(true, data) })
}

func (hc *h2Conn) onReset(f *http2.RSTStreamFrame) error {
	if err := hc.control(); err != nil {
		return err
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if f.StreamID > hc.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if st := hc.streams[f.StreamID]; st != nil {
		st.cancelLocked(errStreamReset)
		st.remoteDone = true
		hc.forgetLocked(st)
	}
	return nil
}

func (hc *h2Conn) onData(f *http2.DataFrame) error {
	id, n := f.StreamID, int64(f.Length)
	hc.mu.Lock()
	if n > hc.recvWin {
		hc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	hc.recvWin -= n
	st := hc.streams[id]
	switch {
	case id > hc.maxID:
		hc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case st == nil || st.remoteDone:
		hc.mu.Unlock()
		hc.credit(n)
		return hc.streamError(http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed})
	}
	data := f.Data()
	code, dropped := st.receiveLocked(data, n, f.StreamEnded())
	hc.mu.Unlock()
	if pad := n - int64(len(data)); pad > 0 && code == 0 {
		hc.creditStream(id, pad)
		hc.credit(pad)
	}
	hc.credit(dropped)
	if code != 0 {
		hc.credit(n)
		return hc.streamError(http2.StreamError{StreamID: id, Code: code})
	}
	if n == 0 && !f.StreamEnded() {
		return hc.control()
	}
	return nil
}

// credit gives n bytes received and consumed (or dropped) back to the
// connection's window, in batches of a sixteenth of it.
func (hc *h2Conn) credit(n int64) {
	if n <= 0 {
		return
	}
	hc.mu.Lock()
	hc.unacked += n
	n = hc.unacked
	if n < h2ConnWindow/16 {
		hc.mu.Unlock()
		return
	}
	hc.unacked = 0
	hc.recvWin += n
	hc.mu.Unlock()
	hc.withWriter(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, uint32(n)) })
}

// creditStream gives n bytes back to stream id's window while the
// stream still receives.
func (hc *h2Conn) creditStream(id uint32, n int64) {
	hc.mu.Lock()
	st := hc.streams[id]
	open := st != nil && !st.remoteDone && !st.reset
	if open {
		st.recvWin += n
	}
	hc.mu.Unlock()
	if open {
		hc.withWriter(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(id, uint32(n)) })
	}
}

// forgetLocked removes st from the open streams (mu held).
func (hc *h2Conn) forgetLocked(st *h2Stream) {
	if hc.streams[st.id] == st {
		delete(hc.streams, st.id)
		hc.armIdleLocked()
	}
}
