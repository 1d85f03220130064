package l4

import "time"

// sweepEvery is how often idle connections are looked for.
const sweepEvery = time.Second

// sweep closes connections on which no byte moved for their listener's
// idle_timeout.
func (m *Manager) sweep() {
	defer close(m.sweepDone)
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-m.stopSweep:
			return
		case now := <-tick.C:
			m.mu.Lock()
			ls := make([]*Listener, 0, len(m.listeners))
			for _, l := range m.listeners {
				ls = append(ls, l)
			}
			m.mu.Unlock()
			for _, l := range ls {
				l.closeIdle(now)
			}
		}
	}
}

func (l *Listener) closeIdle(now time.Time) {
	idle := l.state.Load().cfg.IdleTimeout.D()
	if idle <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		if c.backend == nil || now.Sub(c.lastSeen) < min(idle/4, 5*time.Second) && c.lastBytes != 0 {
			continue
		}
		a, ok1 := tcpActivity(c.client)
		b, ok2 := tcpActivity(c.backend)
		if !ok1 || !ok2 {
			continue
		}
		if total := a + b; total != c.lastBytes {
			c.lastBytes, c.lastSeen = total, now
			continue
		}
		if now.Sub(c.lastSeen) >= idle {
			c.client.Close()
			c.backend.Close()
		}
	}
}
