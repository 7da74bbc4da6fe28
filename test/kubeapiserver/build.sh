#!/usr/bin/env bash
# Builds kube-apiserver from the k8s.io/kubernetes module pinned in this
# folder's go.mod (a module of its own, so the product's go.mod stays small)
# into ${QCI_CACHE_DIR:-<repo>/.cache}/bin, and reuses it while go.mod and
# go.sum are unchanged. Only the Go module proxy is used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${QCI_CACHE_DIR:-$here/../../.cache}/bin"
mkdir -p "$cache"
out="$cache/kube-apiserver"
sum="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)"
if [ -x "$out" ] && [ "$(cat "$out.sum" 2>/dev/null)" = "$sum" ]; then
  echo "kube-apiserver: reusing $out"
  exit 0
fi
echo "kube-apiserver: building into $out (a few minutes on 2 cores)"
cd "$here"
CGO_ENABLED=0 go build -trimpath -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$out.tmp" "$out"
echo "$sum" > "$out.sum"
