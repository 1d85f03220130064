package kubernetes

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rustygate/rustygate/config"
)

// routeDoc is one route as the file would write it; match holds the
// conditions the file cannot express.
type routeDoc struct {
	Name        string           `yaml:"name"`
	Path        string           `yaml:"path"`
	Host        string           `yaml:"host,omitempty"`
	Methods     []string         `yaml:"methods,omitempty"`
	Backends    []backendDoc     `yaml:"backends"`
	Strategy    string           `yaml:"strategy,omitempty"`
	Protocol    string           `yaml:"protocol,omitempty"`
	Middlewares []map[string]any `yaml:"middlewares,omitempty"`

	match config.RouteMatch
}

type backendDoc struct {
	URL    string `yaml:"url"`
	Weight int    `yaml:"weight,omitempty"`
}

// translator is one translation in progress.
type translator struct {
	w    *World
	opt  Options
	res  Result
	keys map[string]string // route key -> owning object, for conflicts
	l4   map[int32]*l4Port // TCP and TLS listeners by port
}

// Translate turns the objects of w into routes, certificates and status.
// Objects are taken oldest first, so that of two routes claiming the same
// host, path and conditions the older one wins, as the Gateway API and
// Ingress specify.
func Translate(w *World, opt Options) *Result {
	t := &translator{w: w, opt: opt, keys: map[string]string{}}
	t.res.Status = newStatus()
	t.classes()
	t.gateways()
	slices.SortStableFunc(w.HTTPRoutes, byAge)
	for _, r := range w.HTTPRoutes {
		t.httpRoute(r)
	}
	slices.SortStableFunc(w.GRPCRoutes, byAge)
	for _, r := range w.GRPCRoutes {
		t.grpcRoute(r)
	}
	slices.SortStableFunc(w.TLSRoutes, byAge)
	for _, r := range w.TLSRoutes {
		t.tlsRoute(r)
	}
	slices.SortStableFunc(w.TCPRoutes, byAge)
	for _, r := range w.TCPRoutes {
		t.tcpRoute(r)
	}
	t.l4Listeners()
	slices.SortStableFunc(w.Ingresses, byAge)
	for _, in := range w.Ingresses {
		t.ingress(in)
	}
	return &t.res
}

type aged interface {
	GetCreationTimestamp() metav1.Time
	GetNamespace() string
	GetName() string
}

func byAge[T aged](a, b T) int {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		if ta.Before(&tb) {
			return -1
		}
		return 1
	}
	return strings.Compare(key(a.GetNamespace(), a.GetName()), key(b.GetNamespace(), b.GetName()))
}

// parse turns an object's route documents into validated routes, as the
// file's are. source names the object in errors. Routes that differ only
// by conditions the file cannot write (headers, query, exact path) would
// be duplicates to the file's check: they are parsed in separate batches.
func parse(source string, docs []routeDoc) ([]config.Route, error) {
	var batches [][]int
	var seen []map[string]bool
	for i := range docs {
		k := docs[i].Host + "\x00" + docs[i].Path + "\x00" + strings.Join(docs[i].Methods, ",")
		b := 0
		for b < len(batches) && seen[b][k] {
			b++
		}
		if b == len(batches) {
			batches, seen = append(batches, nil), append(seen, map[string]bool{})
		}
		batches[b], seen[b][k] = append(batches[b], i), true
	}
	out := make([]config.Route, len(docs))
	for _, idx := range batches {
		batch := make([]routeDoc, len(idx))
		for j, i := range idx {
			batch[j] = docs[i]
		}
		routes, err := parseBatch(source, batch)
		if err != nil {
			return nil, err
		}
		for j, i := range idx {
			out[i] = routes[j]
		}
	}
	return out, nil
}

func parseBatch(source string, docs []routeDoc) ([]config.Route, error) {
	data, err := yaml.Marshal(map[string]any{"routes": docs, "admin": map[string]any{"listen": "off"}})
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(source, data)
	if err != nil {
		return nil, err
	}
	if len(cfg.Routes) != len(docs) {
		return nil, fmt.Errorf("%s: %d routes parsed from %d", source, len(cfg.Routes), len(docs))
	}
	for i := range cfg.Routes {
		cfg.Routes[i].Match = docs[i].match
	}
	return cfg.Routes, nil
}

// add adds an object's routes, except those whose host, path, methods
// and conditions an older object already claimed; it returns how many
// were shadowed that way.
func (t *translator) add(owner string, routes []config.Route) (shadowed int) {
	for _, r := range routes {
		k := routeKey(&r)
		if first, dup := t.keys[k]; dup && first != owner {
			shadowed++
			continue
		} else if dup {
			continue
		}
		t.keys[k] = owner
		t.res.Routes = append(t.res.Routes, r)
	}
	return shadowed
}

func routeKey(r *config.Route) string {
	m := slices.Clone(r.Methods)
	slices.Sort(m)
	return r.Host + "\x00" + r.Path + "\x00" + strings.Join(m, ",") + r.Match.Key()
}

// RouteKey is the identity two routes may not share (host, path, methods
// and conditions), for merging with the file's routes.
func RouteKey(r *config.Route) string { return routeKey(r) }

// annotationMiddlewares parses the middlewares annotation of an object.
func annotationMiddlewares(ann map[string]string) ([]map[string]any, error) {
	v, ok := ann[MiddlewaresAnnotation]
	if !ok {
		return nil, nil
	}
	var list []map[string]any
	if err := yaml.Unmarshal([]byte(v), &list); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", MiddlewaresAnnotation, err)
	}
	return list, nil
}
