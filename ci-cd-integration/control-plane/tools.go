//go:build tools

// The programs scripts/k8s-control-plane builds from this module: one go.mod pins the
// Kubernetes release and the etcd it is built against.
package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
