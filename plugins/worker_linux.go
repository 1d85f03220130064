//go:build linux

package plugins

import "golang.org/x/sys/unix"

// workersSupported: Linux can lower one thread's priority.
const workersSupported = true

func threadID() int { return unix.Gettid() }

// lowerThreadPriority sets the nice value of one thread (on Linux,
// PRIO_PROCESS with a thread ID names that thread only) to 19, the
// lowest: it then gets a CPU only when normal threads leave it some.
func lowerThreadPriority(tid int) {
	_ = unix.Setpriority(unix.PRIO_PROCESS, tid, 19)
}
