//go:build tools

// Package apiserver pins the programs make test-kubernetes builds.
package apiserver

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
