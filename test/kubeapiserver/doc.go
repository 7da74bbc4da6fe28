// Package kubeapiserver only pins k8s.io/kubernetes so that build.sh can
// build a real kube-apiserver for the end-to-end tests; nothing imports it.
package kubeapiserver
