package kubernetes

import (
	"fmt"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/rustygate/rustygate/config"
)

// placeholderBackend is the pool of a rule that only redirects: the
// redirect answers before any backend is picked, so it is never dialled.
const placeholderBackend = "http://127.0.0.1:9"

// refs is the outcome of resolving a rule's backendRefs.
type refs struct {
	backends []backendDoc
	protocol string
	ok       bool
	reason   string
	msg      string
}

func (t *translator) httpRoute(r *gwv1.HTTPRoute) {
	k := key(r.Namespace, r.Name)
	parents := t.attach(r.Namespace, "HTTPRoute", r.Generation, r.Spec.ParentRefs, r.Spec.Hostnames)
	if len(parents) == 0 {
		return
	}
	hosts := acceptedHosts(parents)
	extra, err := annotationMiddlewares(r.Annotations)
	resolved := refs{ok: true, reason: string(gwv1.RouteReasonResolvedRefs)}
	var docs []routeDoc
	for ri := range r.Spec.Rules {
		rule := &r.Spec.Rules[ri]
		rr := t.backendRefs(r.Namespace, "HTTPRoute", httpBackendRefs(rule.BackendRefs))
		if !rr.ok && resolved.ok {
			resolved = rr
		}
		rdocs, ferr := t.ruleDocs(k, ri, rule, hosts, rr, extra)
		if ferr != nil && err == nil {
			err = ferr
		}
		docs = append(docs, rdocs...)
	}
	t.finishRoute(k, "HTTPRoute", docs, err, parents, resolved, t.res.Status.HTTPRoutes)
}

// finishRoute parses an object's documents, adds its routes and records
// its status. An object whose routes do not validate is left out whole.
func (t *translator) finishRoute(k, kind string, docs []routeDoc, err error, parents []parent, resolved refs, into map[string][]gwv1.RouteParentStatus) {
	var routes []config.Route
	if err == nil {
		routes, err = parse(kind+" "+k, docs)
	}
	if err != nil {
		t.res.Errors = append(t.res.Errors, fmt.Sprintf("%s %s: %s", kind, k, firstLine(err.Error())))
		for i := range parents {
			if parents[i].accepted {
				parents[i].accepted, parents[i].reason, parents[i].msg = false, string(gwv1.RouteReasonUnsupportedValue), firstLine(err.Error())
			}
		}
	} else {
		t.add(kind+" "+k, routes)
	}
	into[k] = parentStatuses(parents, resolved.ok, resolved.reason, resolved.msg)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func acceptedHosts(ps []parent) []string {
	var hosts []string
	seen := map[string]bool{}
	for _, p := range ps {
		if !p.accepted {
			continue
		}
		for _, h := range p.hosts {
			if !seen[h] {
				seen[h] = true
				hosts = append(hosts, h)
			}
		}
	}
	return hosts
}

func httpBackendRefs(in []gwv1.HTTPBackendRef) []gwv1.BackendRef {
	out := make([]gwv1.BackendRef, len(in))
	for i := range in {
		out[i] = in[i].BackendRef
	}
	return out
}

// ruleDocs are the routes of one rule: one per match and host.
func (t *translator) ruleDocs(k string, ri int, rule *gwv1.HTTPRouteRule, hosts []string, rr refs, extra []map[string]any) ([]routeDoc, error) {
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []gwv1.HTTPRouteMatch{{}}
	}
	var docs []routeDoc
	for mi := range matches {
		base, err := httpMatch(&matches[mi])
		if err != nil {
			return nil, err
		}
		mws, redirects, err := t.filters(rule.Filters, base.Path, k)
		if err != nil {
			return nil, err
		}
		base.Middlewares = append(mws, extra...)
		base.Backends, base.Protocol = rr.backends, rr.protocol
		if redirects && len(base.Backends) == 0 {
			base.Backends = []backendDoc{{URL: placeholderBackend}}
		}
		if len(base.Backends) == 0 {
			continue // nothing to send to: the route answers 404 until endpoints are ready
		}
		base.Strategy = strategy(base.Backends)
		for _, h := range hosts {
			d := base
			d.Host = h
			d.Name = fmt.Sprintf("httproute/%s/r%dm%d/%s", k, ri, mi, h)
			docs = append(docs, d)
		}
	}
	return docs, nil
}

// httpMatch translates a match's path, method, headers and query.
func httpMatch(m *gwv1.HTTPRouteMatch) (routeDoc, error) {
	d := routeDoc{Path: "/"}
	if p := m.Path; p != nil {
		if p.Value != nil {
			d.Path = *p.Value
		}
		if p.Type != nil {
			switch *p.Type {
			case gwv1.PathMatchExact:
				d.match.Exact = true
			case gwv1.PathMatchPathPrefix:
			default:
				return d, fmt.Errorf("path match type %s is not supported", *p.Type)
			}
		}
	}
	if m.Method != nil {
		d.Methods = []string{string(*m.Method)}
	}
	for _, h := range m.Headers {
		if h.Type != nil && *h.Type != gwv1.HeaderMatchExact {
			return d, fmt.Errorf("header match type %s is not supported", *h.Type)
		}
		d.match.Headers = append(d.match.Headers, config.NameValue{Name: string(h.Name), Value: h.Value})
	}
	for _, q := range m.QueryParams {
		if q.Type != nil && *q.Type != gwv1.QueryParamMatchExact {
			return d, fmt.Errorf("query parameter match type %s is not supported", *q.Type)
		}
		d.match.Query = append(d.match.Query, config.NameValue{Name: string(q.Name), Value: q.Value})
	}
	return d, nil
}

func strategy(bs []backendDoc) string {
	for _, b := range bs {
		if b.Weight != bs[0].Weight {
			return config.StrategyWeightedRoundRobin
		}
	}
	return ""
}
