//go:build !linux

package l7

// Event loops are Linux only; elsewhere every connection has its own
// goroutine and these are never reached with a waiter set.

// EventLoopsSupported reports whether the fast engine can run event loops
// on this platform.
const EventLoopsSupported = false

type waiter struct{ attached bool }

type loop struct{}

func newLoops(*Server, int) []*loop { return nil }

func (*loop) add(*clientConn) bool { return false }
func (*loop) closeAll()            {}
func (*loop) shutdown()            {}

func (w *waiter) detach()       {}
func (w *waiter) rejoin()       {}
func (w *waiter) detachToStay() {}
func (w *waiter) turn()         {}
func (w *waiter) loop() *loop   { return nil }

func (b *bufConn) useLoop() bool { return false }

func (b *bufConn) waitReadable() error             { return nil }
func (b *bufConn) loopRead(p []byte) (int, error)  { return b.c.Read(p) }
func (b *bufConn) loopWrite(p []byte) (int, error) { return b.c.Write(p) }
