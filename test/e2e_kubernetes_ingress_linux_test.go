//go:build kubernetes

package e2e_test

import (
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

type ingressPath struct {
	path     string
	pathType netv1.PathType
	service  string
}

func netv1PathType(s string) netv1.PathType { return netv1.PathType(s) }

func ingress(ns, name, host string, paths []ingressPath) *netv1.Ingress {
	var ps []netv1.HTTPIngressPath
	for _, p := range paths {
		ps = append(ps, netv1.HTTPIngressPath{Path: p.path, PathType: ptr.To(p.pathType), Backend: netv1.IngressBackend{
			Service: &netv1.IngressServiceBackend{Name: p.service, Port: netv1.ServiceBackendPort{Name: "http"}}}})
	}
	return &netv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: netv1.IngressSpec{IngressClassName: ptr.To("rustygate"), Rules: []netv1.IngressRule{{Host: host,
			IngressRuleValue: netv1.IngressRuleValue{HTTP: &netv1.HTTPIngressRuleValue{Paths: ps}}}}}}
}
