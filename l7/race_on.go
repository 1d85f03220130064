//go:build race

package l7

// raceEnabled reports a -race build, where sync.Pool drops items at
// random and allocation counts mean nothing, and where the event loops
// make their reads and writes through package syscall, whose annotations
// tell the race detector that a write to a socket happens before the
// read of its bytes (see rawSyscall).
const raceEnabled = true
