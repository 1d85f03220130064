//go:build linux

package plugins

import "golang.org/x/sys/unix"

// workersSupported: Linux can lower one thread's priority.
const workersSupported = true

func threadID() int { return unix.Gettid() }

// lowerThreadPriority moves one thread to SCHED_IDLE, with nice 19 (on
// Linux, PRIO_PROCESS with a thread ID names that thread only): it then
// gets a CPU only when normal threads leave it some. Nice 19 alone still
// weighs on the others: the scheduler counts the CPU it runs on as busy,
// so a loop's thread waking up queues there, or moves, instead of taking
// it at once, as it does from a SCHED_IDLE thread. Where SCHED_IDLE is
// refused, nice 19 stays.
func lowerThreadPriority(tid int) {
	_ = unix.Setpriority(unix.PRIO_PROCESS, tid, 19)
	_ = unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: 19}, 0)
}
