package loader

// Status describes the kernel datapath from what is pinned under a bpffs
// directory, as `rustygate bpf status` prints it. ReadStatus builds it by
// opening the pinned objects; it loads and attaches nothing.
type Status struct {
	// Dir is the bpffs directory read.
	Dir string
	// Pinned is false when Dir does not exist: no gateway runs the kernel
	// datapath there and none persisted its maps.
	Pinned bool
	// Mode is "kernel" when a pinned program is attached somewhere, else
	// "userspace".
	Mode     string
	Programs []ProgramStatus
	Maps     []MapStatus
	// Counters are the limiter's, when its counter map is pinned.
	Counters *Counters
	// Steering is the connection steering of the l4 port range
	// listeners, pinned under Dir/steer; Mode and Programs do not count it.
	Steering []SteerStatus
}

// SteerStatus is the connection steering of one l4 listener.
type SteerStatus struct {
	// Listener is the listener's name, from its directory's.
	Listener string
	Dir      string
	// Socket is the cookie of the listening socket in the SOCKMAP, 0 when
	// it holds none (no process serves the range).
	Socket uint64
	// Program is the pinned sk_lookup program with its links, nil when
	// none is pinned.
	Program *ProgramStatus
}

// ProgramStatus is one pinned program.
type ProgramStatus struct {
	Name string
	Path string
	ID   uint32
	Type string
	// Attached lists where the program runs; empty when it is not attached.
	Attached []AttachStatus
}

// AttachStatus is one link of a program.
type AttachStatus struct {
	LinkID uint32
	// Hook is "xdp/native", "xdp/generic", "xdp" (mode unknown),
	// "tcx/ingress" or, for steering, "sk_lookup".
	Hook    string
	Ifindex int
	// Interface is the interface's name in this network namespace, "" when
	// it is not there (the gateway runs in another namespace).
	Interface string
}

// MapStatus is one pinned map.
type MapStatus struct {
	Name       string
	Path       string
	ID         uint32
	Type       string
	Entries    int
	MaxEntries uint32
}
