package kubernetes

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"

	"github.com/rustygate/rustygate/config"
)

// ingress translates an Ingress of the class served: each rule's paths
// (pathType Exact: the path exactly; Prefix and ImplementationSpecific:
// by path element, so /foo matches /foo and /foo/bar, not /foobar), the
// default backend as "/" for any host, and the TLS Secrets.
func (t *translator) ingress(in *netv1.Ingress) {
	if in.Spec.IngressClassName == nil || *in.Spec.IngressClassName != t.opt.IngressClass {
		return
	}
	k := key(in.Namespace, in.Name)
	extra, err := annotationMiddlewares(in.Annotations)
	var docs []routeDoc
	if b := in.Spec.DefaultBackend; b != nil {
		if d, ok := t.ingressDoc(in.Namespace, b, "/", false, ""); ok {
			d.Name = fmt.Sprintf("ingress/%s/default", k)
			docs = append(docs, d)
		}
	}
	for ri, rule := range in.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		for pi, p := range rule.HTTP.Paths {
			exact := p.PathType != nil && *p.PathType == netv1.PathTypeExact
			path := p.Path
			if path == "" {
				path = "/"
			}
			if d, ok := t.ingressDoc(in.Namespace, &p.Backend, path, exact, rule.Host); ok {
				d.Name = fmt.Sprintf("ingress/%s/r%dp%d", k, ri, pi)
				docs = append(docs, d)
			}
		}
	}
	for i := range docs {
		docs[i].Middlewares = extra
	}
	for _, tls := range in.Spec.TLS {
		if s := t.w.Secrets[key(in.Namespace, tls.SecretName)]; s != nil && len(s.Data[corev1.TLSCertKey]) > 0 {
			t.addCert(s)
		}
	}
	var routes []config.Route
	if err == nil {
		routes, err = parse("Ingress "+k, docs)
	}
	if err != nil {
		t.res.Errors = append(t.res.Errors, fmt.Sprintf("Ingress %s: %s", k, firstLine(err.Error())))
		return
	}
	t.add("Ingress "+k, routes)
}

func (t *translator) ingressDoc(ns string, b *netv1.IngressBackend, path string, exact bool, host string) (routeDoc, bool) {
	d := routeDoc{Path: path, Host: host}
	d.match.Exact = exact
	if b.Service == nil {
		return d, false
	}
	svc := t.w.Services[key(ns, b.Service.Name)]
	if svc == nil {
		return d, false
	}
	sp, ok := servicePort(svc, b.Service.Port.Number, b.Service.Port.Name)
	if !ok {
		return d, false
	}
	for _, e := range endpoints(t.w.Slices[key(ns, b.Service.Name)], sp) {
		d.Backends = append(d.Backends, backendDoc{URL: "http://" + e.addr})
	}
	if h2c(sp) {
		d.Protocol = "h2c"
	}
	return d, len(d.Backends) > 0
}
