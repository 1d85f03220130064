package main

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/loader"
)

// banner turns L7 offences into datapath bans: a client that exceeds its
// rate limit by `bans.rate_limit_factor`, fails JWT validation
// `bans.jwt_failures` times within `bans.jwt_window`, or is refused by
// the WAF `bans.waf_blocks` times within `bans.waf_window`, is banned for
// `bans.duration` (in the kernel when it runs there: its packets are
// dropped before they reach the gateway).
type banner struct {
	dp     *loader.Datapath
	target banTarget
	log    *slog.Logger
	cfg    atomic.Pointer[config.Bans]

	mu sync.Mutex
	// failures (JWT) and wafBlocks count offences per address.
	failures  map[netip.Addr]*failureWindow
	wafBlocks map[netip.Addr]*failureWindow
	// recent avoids re-banning an address on every request that arrives
	// while the ban is being installed.
	recent map[netip.Addr]time.Time
}

type failureWindow struct {
	start time.Time
	count int
}

// maxTracked bounds the addresses tracked for each kind of offence.
const maxTracked = 100000

// banTarget applies a ban: the datapath, or the cluster (every node's
// datapath).
type banTarget interface {
	Ban(ip netip.Addr, ttl time.Duration) error
}

func newBanner(dp *loader.Datapath, target banTarget, cfg config.Bans, log *slog.Logger) *banner {
	b := &banner{dp: dp, target: target, log: log, failures: map[netip.Addr]*failureWindow{}, wafBlocks: map[netip.Addr]*failureWindow{}, recent: map[netip.Addr]time.Time{}}
	b.cfg.Store(&cfg)
	return b
}

func (b *banner) setConfig(cfg config.Bans) { b.cfg.Store(&cfg) }

func (b *banner) RateLimitExceeded(ip netip.Addr, over float64) {
	cfg := b.cfg.Load()
	if cfg.RateLimitFactor <= 0 || over < cfg.RateLimitFactor {
		return
	}
	b.ban(ip, cfg, "rate_limit")
}

func (b *banner) Rejected(policy, reason string, ip netip.Addr) {
	cfg := b.cfg.Load()
	if !ip.IsValid() {
		return
	}
	switch {
	case policy == "jwt" && cfg.JWTFailures > 0:
		b.count(b.failures, ip, cfg, cfg.JWTFailures, cfg.JWTWindow.D(), "jwt_failures")
	case policy == "waf" && reason == "blocked" && cfg.WAFBlocks > 0:
		// Only verdicts of the rules count: a body refused for its size
		// is no attack.
		b.count(b.wafBlocks, ip, cfg, cfg.WAFBlocks, cfg.WAFWindow.D(), "waf_blocks")
	}
}

// count adds an offence of ip to its window in windows and bans ip once
// it reaches limit within window.
func (b *banner) count(windows map[netip.Addr]*failureWindow, ip netip.Addr, cfg *config.Bans, limit int, window time.Duration, why string) {
	now := time.Now()
	b.mu.Lock()
	w := windows[ip]
	if w == nil || now.Sub(w.start) > window {
		if w == nil && len(windows) >= maxTracked {
			prune(windows, now, window)
		}
		w = &failureWindow{start: now}
		windows[ip] = w
	}
	w.count++
	hit := w.count >= limit
	if hit {
		delete(windows, ip)
	}
	b.mu.Unlock()
	if hit {
		b.ban(ip, cfg, why)
	}
}

func prune(windows map[netip.Addr]*failureWindow, now time.Time, window time.Duration) {
	for ip, w := range windows {
		if now.Sub(w.start) > window {
			delete(windows, ip)
		}
	}
	if len(windows) >= maxTracked {
		clear(windows)
	}
}

func (b *banner) ban(ip netip.Addr, cfg *config.Bans, why string) {
	now := time.Now()
	b.mu.Lock()
	if t, ok := b.recent[ip]; ok && now.Sub(t) < time.Second {
		b.mu.Unlock()
		return
	}
	if len(b.recent) > 1024 {
		clear(b.recent)
	}
	b.recent[ip] = now
	b.mu.Unlock()
	if err := b.target.Ban(ip, cfg.Duration.D()); err != nil {
		b.log.Error("ban failed", "ip", ip.String(), "reason", why, "error", err.Error())
		return
	}
	b.log.Warn("client banned", "ip", ip.String(), "reason", why, "for", cfg.Duration.D().String(), "datapath", b.dp.Mode())
}
