package observe

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Rejections describes the counter family of the requests one middleware
// answers itself (RouteMetrics.Rejected). The middleware declares it; the
// metrics know no middleware by name.
type Rejections struct {
	// Name is the metric name, such as "rustygate_rate_limited_total".
	Name string
	Help string
	// ByReason adds a reason label beside the route label. Without it, a
	// route's series exists, at 0, from the route's creation on.
	ByReason bool
}

// rejectionFamily is a declared family.
type rejectionFamily struct {
	spec Rejections
	vec  *prometheus.CounterVec
}

// noReason is the cache key of the counters of families without a reason
// label (no policy reports it as a reason).
const noReason = "\x00"

// DeclareRejections registers the counter family of policy's rejections.
// Declaring a policy again with the same description does nothing; a
// different description, or a name another metric has, is an error.
func (m *Metrics) DeclareRejections(policy string, spec Rejections) error {
	if m == nil {
		return nil
	}
	m.rejectionsMu.Lock()
	if f, ok := m.rejections[policy]; ok {
		m.rejectionsMu.Unlock()
		if f.spec != spec {
			return fmt.Errorf("metrics: %s rejections declared as %s and as %s", policy, f.spec.Name, spec.Name)
		}
		return nil
	}
	labels := []string{"route"}
	if spec.ByReason {
		labels = append(labels, "reason")
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: spec.Name, Help: spec.Help}, labels)
	if err := m.reg.Register(vec); err != nil {
		m.rejectionsMu.Unlock()
		return fmt.Errorf("metrics: %s rejections: %w", policy, err)
	}
	if m.rejections == nil {
		m.rejections = map[string]*rejectionFamily{}
	}
	m.rejections[policy] = &rejectionFamily{spec: spec, vec: vec}
	m.rejectionsMu.Unlock()
	if !spec.ByReason {
		// Routes made from now on see the family (Route); these are the
		// ones made before.
		m.routesMu.Lock()
		for label := range m.routes {
			vec.WithLabelValues(label)
		}
		m.routesMu.Unlock()
	}
	return nil
}

// rejectionFamily returns the family declared for policy, or nil.
func (m *Metrics) rejectionFamily(policy string) *rejectionFamily {
	m.rejectionsMu.Lock()
	defer m.rejectionsMu.Unlock()
	return m.rejections[policy]
}
