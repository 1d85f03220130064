package kubernetes

import (
	"fmt"
	"regexp"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// filters translates a rule's filters into middleware entries (headers,
// redirect, rewrite, mirror). prefix is the match's path, for the
// ReplacePrefixMatch modifiers; k is "namespace/name" of the route.
func (t *translator) filters(fs []gwv1.HTTPRouteFilter, prefix, k string) (mws []map[string]any, redirects bool, err error) {
	ns, _, _ := strings.Cut(k, "/")
	var hdr map[string]any
	for _, f := range fs {
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier, gwv1.HTTPRouteFilterResponseHeaderModifier:
			if hdr == nil {
				hdr = map[string]any{"name": "headers"}
				mws = append(mws, hdr)
			}
			side, mod := "request", f.RequestHeaderModifier
			if f.Type == gwv1.HTTPRouteFilterResponseHeaderModifier {
				side, mod = "response", f.ResponseHeaderModifier
			}
			if mod != nil {
				hdr[side] = headerOps(mod)
			}
		case gwv1.HTTPRouteFilterRequestRedirect:
			m, err := redirect(f.RequestRedirect, prefix)
			if err != nil {
				return nil, false, err
			}
			mws, redirects = append(mws, m), true
		case gwv1.HTTPRouteFilterURLRewrite:
			m, err := rewrite(f.URLRewrite, prefix)
			if err != nil {
				return nil, false, err
			}
			mws = append(mws, m)
		case gwv1.HTTPRouteFilterRequestMirror:
			u, err := t.mirrorURL(ns, f.RequestMirror.BackendRef)
			if err != nil {
				return nil, false, err
			}
			m := map[string]any{"name": "mirror", "backend": u}
			if p := f.RequestMirror.Percent; p != nil {
				m["percentage"] = float64(*p)
			}
			mws = append(mws, m)
		default:
			return nil, false, fmt.Errorf("filter %s is not supported", f.Type)
		}
	}
	return mws, redirects, nil
}

func headerOps(h *gwv1.HTTPHeaderFilter) map[string]any {
	ops := map[string]any{}
	kv := func(hs []gwv1.HTTPHeader) map[string]string {
		m := map[string]string{}
		for _, x := range hs {
			m[string(x.Name)] = x.Value
		}
		return m
	}
	if len(h.Set) > 0 {
		ops["set"] = kv(h.Set)
	}
	if len(h.Add) > 0 {
		ops["add"] = kv(h.Add)
	}
	if len(h.Remove) > 0 {
		ops["remove"] = h.Remove
	}
	return ops
}

func redirect(r *gwv1.HTTPRequestRedirectFilter, prefix string) (map[string]any, error) {
	m := map[string]any{"name": "redirect", "status": 302}
	if r.StatusCode != nil {
		m["status"] = *r.StatusCode
	}
	if r.Scheme != nil {
		m["scheme"] = *r.Scheme
	}
	if r.Hostname != nil {
		m["host"] = string(*r.Hostname)
	}
	if r.Port != nil {
		m["port"] = int(*r.Port)
	}
	if p := r.Path; p != nil {
		switch {
		case p.Type == gwv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
			m["path"] = *p.ReplaceFullPath
		case p.Type == gwv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
			m["regex"] = "^" + regexp.QuoteMeta(strings.TrimSuffix(prefix, "/")) + "(/.*)?$"
			m["replacement"] = strings.TrimSuffix(*p.ReplacePrefixMatch, "/") + "$1"
		}
	}
	return m, nil
}

func rewrite(r *gwv1.HTTPURLRewriteFilter, prefix string) (map[string]any, error) {
	if r.Hostname != nil {
		return nil, fmt.Errorf("urlRewrite.hostname is not supported")
	}
	m := map[string]any{"name": "rewrite"}
	if p := r.Path; p != nil {
		switch {
		case p.Type == gwv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
			m["regex"], m["replacement"] = "^.*$", *p.ReplaceFullPath
		case p.Type == gwv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
			if prefix != "/" {
				m["strip_prefix"] = strings.TrimSuffix(prefix, "/")
			}
			if np := strings.TrimSuffix(*p.ReplacePrefixMatch, "/"); np != "" {
				m["add_prefix"] = np
			}
		}
	}
	return m, nil
}
