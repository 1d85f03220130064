package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/config"
)

// Modes, as Mode returns them.
const (
	ModeKernel    = "kernel"
	ModeUserspace = "userspace"
)

// Reasons, as Reason returns them: short, stable values fit for a metric
// label. Detail gives the full story.
const (
	// ReasonConfigured: datapath.mode asked for this mode.
	ReasonConfigured = "configured"
	// ReasonAvailable: datapath.mode is auto and the kernel datapath loaded.
	ReasonAvailable = "available"
	// ReasonNotNeeded: mode auto, and nothing configured needs the kernel
	// (no rate, no deny list, no bans), so no program is attached.
	ReasonNotNeeded = "not_needed"
	// The kernel datapath could not load and auto fell back, because:
	ReasonNotLinux         = "not_linux"         // the OS has no BPF
	ReasonNoPrivileges     = "no_privileges"     // EPERM/EACCES: not root, no CAP_BPF and CAP_NET_ADMIN
	ReasonNotSupported     = "not_supported"     // the kernel lacks a feature (ErrNotSupported, EOPNOTSUPP)
	ReasonNoBPFSyscall     = "no_bpf_syscall"    // ENOSYS: no bpf(2), e.g. blocked by seccomp
	ReasonVerifierRejected = "verifier_rejected" // this kernel's verifier refused the program
	ReasonLoadFailed       = "load_failed"       // anything else
)

// sweepInterval is how often expired bans are deleted. Expiry itself is
// exact: the kernel program and the accept path compare the expiry with
// the clock on every packet or connection.
const sweepInterval = time.Second

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("loader: datapath closed")

// Ban is one banned source address.
type Ban struct {
	IP    netip.Addr `json:"ip"`
	Until time.Time  `json:"until"`
}

// Counters count the limiter's decisions since the datapath's maps were
// created (in kernel mode they survive restarts with datapath.persist).
// The kernel counts packets: a client retransmitting a dropped SYN counts
// again. The userspace twin counts accepted connections.
type Counters struct {
	// Passed is new connections let through to a guarded port.
	Passed uint64
	// Limited is new connections dropped by a source's token bucket.
	Limited uint64
	// Denied is drops of deny-listed sources.
	Denied uint64
	// Banned is drops of banned sources.
	Banned uint64
}

// Datapath filters new connections to the gateway's ports by source
// address: a token bucket per source, allow and deny lists, and bans. It
// runs in the kernel (Mode "kernel") or in the accept path of the
// listeners it wraps (Mode "userspace"); both enforce the same policy.
// Its methods are safe for concurrent use.
type Datapath struct {
	log    *slog.Logger
	mode   string
	reason string
	detail string

	pol atomic.Pointer[policy]

	// mu serialises Update and Close.
	mu     sync.Mutex
	cfg    config.Datapath
	closed atomic.Bool

	// kern is set in kernel mode.
	kern *kernel

	// The userspace twin's state, used in userspace mode.
	sources                         *sourceLimiter
	bans                            *banTable
	passed, limited, denied, banned atomic.Uint64

	stopSweep chan struct{}
	swept     chan struct{}
}

// New builds the datapath for cfg. listenPorts are the gateway's listening
// ports, which "auto" in datapath.kernel_rate_limit.ports stands for.
//
// With datapath.mode kernel, New fails when the kernel datapath cannot
// load; with auto it falls back to userspace and logs a warning; with
// userspace it never touches BPF. It also fails on a configuration it
// cannot enforce (a bad CIDR or port, an interface that does not exist).
func New(cfg config.Datapath, listenPorts []int, log *slog.Logger) (*Datapath, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pol, err := newPolicy(cfg, listenPorts)
	if err != nil {
		return nil, err
	}
	d := &Datapath{log: log, cfg: cloneConfig(cfg)}
	d.pol.Store(pol)

	switch {
	case cfg.Mode == config.DatapathUserspace:
		d.useUserspace(ReasonConfigured, "datapath.mode is userspace")
		log.Info("datapath: userspace", "reason", d.reason)
	case (cfg.Mode == config.DatapathAuto || cfg.Mode == "") && !kernelNeeded(cfg):
		d.useUserspace(ReasonNotNeeded, "no kernel_rate_limit rate, deny list or bans configured")
		log.Info("datapath: userspace", "reason", d.reason)
	case cfg.Mode == config.DatapathKernel || cfg.Mode == config.DatapathAuto || cfg.Mode == "":
		kern, err := loadKernel(cfg, pol, log)
		if err != nil {
			var cerr *configError
			if errors.As(err, &cerr) {
				return nil, err
			}
			reason := fallbackReason(err)
			if cfg.Mode == config.DatapathKernel {
				return nil, fmt.Errorf("datapath.mode is kernel, but the kernel datapath cannot load (%s): %w%s", reason, err, hint(reason))
			}
			d.useUserspace(reason, "kernel datapath unavailable: "+err.Error())
			log.Warn("datapath: kernel datapath unavailable, limiting connections in userspace instead",
				"reason", reason, "error", err.Error())
			break
		}
		d.kern = kern
		d.mode = ModeKernel
		d.reason = ReasonAvailable
		if cfg.Mode == config.DatapathKernel {
			d.reason = ReasonConfigured
		}
		d.detail = "attached to " + kern.describe()
		log.Info("datapath: kernel", "reason", d.reason, "attached", kern.describe(), "bpffs", cfg.BPFFS)
	default:
		return nil, fmt.Errorf("datapath.mode: unknown mode %q (supported: %s, %s, %s)", cfg.Mode,
			config.DatapathAuto, config.DatapathKernel, config.DatapathUserspace)
	}

	d.stopSweep = make(chan struct{})
	d.swept = make(chan struct{})
	go d.sweepLoop()
	return d, nil
}

// kernelNeeded reports whether cfg asks for anything the kernel program
// does: without it, mode auto attaches nothing to the host's interfaces.
func kernelNeeded(cfg config.Datapath) bool {
	k := cfg.KernelRateLimit
	b := cfg.Bans
	return k.Rate > 0 || len(k.Deny) > 0 || b.RateLimitFactor > 0 || b.JWTFailures > 0
}

func (d *Datapath) useUserspace(reason, detail string) {
	d.mode, d.reason, d.detail = ModeUserspace, reason, detail
	d.sources = newSourceLimiter(d.pol.Load().maxSources)
	d.bans = newBanTable()
}

// hint tells the operator what to do about a failed kernel load.
func hint(reason string) string {
	switch reason {
	case ReasonNoPrivileges:
		return " (run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON with bpffs mounted, plus CAP_SYS_ADMIN to mount it; or set datapath.mode: auto or userspace)"
	case ReasonNotLinux, ReasonNotSupported, ReasonNoBPFSyscall, ReasonVerifierRejected:
		return " (set datapath.mode: auto or userspace to limit connections in userspace)"
	}
	return ""
}

// Mode is "kernel" or "userspace".
func (d *Datapath) Mode() string { return d.mode }

// Reason says why Mode was chosen: one of the Reason* values.
func (d *Datapath) Reason() string { return d.reason }

// Detail describes the choice in a sentence: where the programs are
// attached, or why the kernel datapath did not load.
func (d *Datapath) Detail() string { return d.detail }

// WrapListener returns ln with the userspace limiter in its accept path:
// connections the policy rejects are closed (with a reset) right after
// accept and never returned. In kernel mode the kernel has already
// filtered them, and WrapListener returns ln itself.
func (d *Datapath) WrapListener(ln net.Listener) net.Listener {
	if d.kern != nil {
		return ln
	}
	return &limitedListener{Listener: ln, d: d}
}

// admit decides on one accepted connection from src to port (userspace
// mode), in the kernel program's order: deny, ban, allow, token bucket.
func (d *Datapath) admit(src netip.Addr, port uint16) bool {
	p := d.pol.Load()
	if !p.guards(port) {
		return true
	}
	src = sourceAddr(src)
	if p.deny.contains(src) {
		d.denied.Add(1)
		return false
	}
	if d.bans.banned(src, time.Now()) {
		d.banned.Add(1)
		return false
	}
	if p.interval == 0 || p.allow.contains(src) || d.sources.allow(src, monoNow(), p.interval, p.tolerance) {
		d.passed.Add(1)
		return true
	}
	d.limited.Add(1)
	return false
}

// Ban drops every packet (kernel) or connection (userspace) from ip to
// the guarded ports until ttl has passed; ttl <= 0 means
// datapath.bans.duration. Banning a banned address sets its new expiry.
// In kernel mode the ban is in force when Ban returns.
func (d *Datapath) Ban(ip netip.Addr, ttl time.Duration) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if !ip.IsValid() {
		return errors.New("ban: invalid IP address")
	}
	ip = sourceAddr(ip)
	if ttl <= 0 {
		ttl = d.pol.Load().banTTL
	}
	if d.kern != nil {
		return d.kern.ban(ip, ttl)
	}
	d.bans.add(ip, time.Now().Add(ttl))
	return nil
}

// Unban lifts a ban; lifting one that does not exist is not an error.
func (d *Datapath) Unban(ip netip.Addr) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if !ip.IsValid() {
		return errors.New("unban: invalid IP address")
	}
	ip = sourceAddr(ip)
	if d.kern != nil {
		return d.kern.unban(ip)
	}
	d.bans.remove(ip)
	return nil
}

// Bans lists the bans in force, by address.
func (d *Datapath) Bans() []Ban {
	if d.closed.Load() {
		return nil
	}
	if d.kern != nil {
		bans, err := d.kern.listBans()
		if err != nil {
			d.log.Warn("datapath: reading bans", "error", err.Error())
		}
		return bans
	}
	return d.bans.list(time.Now())
}

// Counters returns the limiter's counters.
func (d *Datapath) Counters() (Counters, error) {
	if d.closed.Load() {
		return Counters{}, ErrClosed
	}
	if d.kern != nil {
		return d.kern.counters()
	}
	return Counters{
		Passed:  d.passed.Load(),
		Limited: d.limited.Load(),
		Denied:  d.denied.Load(),
		Banned:  d.banned.Load(),
	}, nil
}

// Update applies a reloaded configuration in place: rate, burst, ports,
// allow and deny lists, ban duration and, in kernel mode, the set of
// interfaces. Buckets and bans are kept. A change of mode, bpffs or
// persist, and in kernel mode of max_sources, applies at the next start
// and is logged. On error nothing changes. Update is Prepare then
// Commit.
func (d *Datapath) Update(cfg config.Datapath, listenPorts []int) error {
	c, err := d.Prepare(cfg, listenPorts)
	if err != nil {
		return err
	}
	return c.Commit()
}

// Close stops the datapath. In kernel mode it detaches the programs and
// removes the pins, except the maps when datapath.persist is set (bans and
// buckets then survive a restart). Close is idempotent.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Swap(true) {
		return nil
	}
	close(d.stopSweep)
	<-d.swept
	if d.kern != nil {
		return d.kern.close()
	}
	return nil
}

func (d *Datapath) sweepLoop() {
	defer close(d.swept)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-d.stopSweep:
			return
		case <-t.C:
		}
		if d.kern != nil {
			if err := d.kern.sweepBans(); err != nil {
				d.log.Warn("datapath: sweeping expired bans", "error", err.Error())
			}
		} else {
			d.bans.sweep(time.Now())
		}
	}
}

// configError is a configuration the datapath cannot enforce, such as an
// interface that does not exist: New reports it in every mode but
// userspace instead of falling back.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

func cloneConfig(c config.Datapath) config.Datapath {
	c.Interfaces = slices.Clone(c.Interfaces)
	c.KernelRateLimit.Ports = slices.Clone(c.KernelRateLimit.Ports)
	c.KernelRateLimit.Allow = slices.Clone(c.KernelRateLimit.Allow)
	c.KernelRateLimit.Deny = slices.Clone(c.KernelRateLimit.Deny)
	return c
}
