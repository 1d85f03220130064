package upstream

import "sync"

// Registry keeps backend state across configuration reloads and runs the
// active health checks of the current configuration.
//
// A backend's identity is its scope and URL. The scope is chosen by the
// caller: l7 uses the route name, so each route is its own cluster with
// its own requests-in-flight counts, health verdicts and ejections (its
// settings for them are its own too). A reload goes:
//
//  1. For every backend of the new configuration, Backend(scope, url,
//     weight) returns a new *Backend sharing the state of the previous
//     one with that identity (or fresh state), and NewPool builds the
//     pools over them.
//  2. Sync(pools...) with every pool of the new configuration starts,
//     keeps or stops health checkers: one per backend whose pool has
//     health checks. A checker whose settings (interval, timeout,
//     thresholds, prober description) are unchanged keeps running and
//     from then on reports the new Backend value; one whose settings
//     changed is replaced, keeping the current verdict. A backend whose
//     pool no longer has health checks is marked up (OnChange is called
//     if it was down). Identities absent from the synced pools are
//     forgotten and their checkers stopped.
//
// The old configuration's pools keep working while requests drain: they
// share the state, so their picks follow the same verdicts.
//
// Identities seen by Backend but never synced (a configuration that
// failed to build) are forgotten at the next Sync. Calls are serialised
// internally, but reloads are expected to be made one at a time.
type Registry struct {
	onChange OnChange

	mu     sync.Mutex
	states map[identity]*backendState
	checks map[*backendState]*probeLoop
	closed bool
}

type identity struct{ scope, url string }

// NewRegistry returns an empty registry. onChange, called on every health
// transition, may be nil.
func NewRegistry(onChange OnChange) *Registry {
	return &Registry{
		onChange: onChange,
		states:   make(map[identity]*backendState),
		checks:   make(map[*backendState]*probeLoop),
	}
}

// Backend returns a Backend for url (as NewBackend parses it) in scope,
// sharing state with every Backend returned for the same scope and URL
// since the last Sync that included it. Each call returns a new value,
// to be placed in one pool.
func (r *Registry) Backend(scope, url string, weight int) (*Backend, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := identity{scope, url}
	st := r.states[id]
	fresh := st == nil
	if fresh {
		st = &backendState{}
	}
	b, err := newBackend(url, weight, scope, st)
	if err != nil {
		return nil, err
	}
	if fresh {
		r.states[id] = st
	}
	return b, nil
}

// Sync makes pools the current configuration (see Registry). It returns
// once the checkers it stopped have ended. A backend listed by two pools
// is checked with the settings of the first.
func (r *Registry) Sync(pools ...*Pool) {
	type change struct {
		b  *Backend
		up bool
	}
	var (
		stopped []*probeLoop
		started []*probeLoop
		changes []change
	)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	live := make(map[*backendState]bool)
	for _, p := range pools {
		for _, b := range p.backends {
			if live[b.st] {
				continue
			}
			live[b.st] = true
			old := r.checks[b.st]
			if p.health == nil {
				if old != nil {
					old.stop()
					stopped = append(stopped, old)
					delete(r.checks, b.st)
				}
				if b.st.down.CompareAndSwap(true, false) {
					changes = append(changes, change{b, true})
				}
				continue
			}
			if old != nil && old.key == keyOf(*p.health) {
				old.backend.Store(b)
				old.prober.Store(&proberBox{p.health.Prober})
				continue
			}
			if old != nil {
				old.stop()
				stopped = append(stopped, old)
			}
			l := newProbeLoop(b, *p.health, r.onChange)
			r.checks[b.st] = l
			started = append(started, l)
		}
	}
	for st, l := range r.checks {
		if !live[st] {
			l.stop()
			stopped = append(stopped, l)
			delete(r.checks, st)
		}
	}
	for id, st := range r.states {
		if !live[st] {
			delete(r.states, id)
		}
	}
	r.mu.Unlock()

	// A replaced checker ends before its successor starts, so two never
	// drive one backend.
	for _, l := range stopped {
		l.wait()
	}
	for _, l := range started {
		l.start()
	}
	if r.onChange != nil {
		for _, c := range changes {
			r.onChange(c.b, c.up, "health checks disabled")
		}
	}
}

// Close stops every health checker and waits for them. The backends keep
// their last verdict; a later Sync does nothing.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	loops := make([]*probeLoop, 0, len(r.checks))
	for st, l := range r.checks {
		l.stop()
		loops = append(loops, l)
		delete(r.checks, st)
	}
	r.mu.Unlock()
	for _, l := range loops {
		l.wait()
	}
}
