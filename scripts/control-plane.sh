#!/usr/bin/env bash
# Builds the real Kubernetes control plane used by the e2e tests from Go modules
# (kube-apiserver, kube-scheduler, kubectl and etcd) and caches the binaries by version
# outside the checkout. It also fetches cert-manager's CRDs (from its Go module) so the
# cert-manager overlay can be applied to the test apiserver. A second run finds the cache
# and does nothing.
#
# Usage: scripts/control-plane.sh [print-dir | print-crds]
#   STOWAGE_CACHE   cache root (default: $XDG_CACHE_HOME/stowage or ~/.cache/stowage)
#   K8S_VERSION     Kubernetes release (default below; staging modules use v0.<minor>.<patch>)
#   ETCD_VERSION    etcd release (>= 3.5.13 for watch-list / consistent reads)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.35.8}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${STOWAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage}"
K8S_BIN="$CACHE/kubernetes-$K8S_VERSION/bin"
ETCD_BIN="$CACHE/etcd-$ETCD_VERSION/bin"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.21.2}"
CRDS="$CACHE/cert-manager-$CERT_MANAGER_VERSION/crds"

case "${1:-}" in
  print-dir) echo "$K8S_BIN:$ETCD_BIN"; exit 0 ;;
  print-crds) echo "$CRDS"; exit 0 ;;
esac

export GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
log() { printf '[control-plane] %s\n' "$*" >&2; }

# Go's module and build caches are only needed while building (several GiB on a fresh
# machine): keep them private to this script and remove them when it exits. The binaries
# are what is cached.
GO_CACHES="$CACHE/build/go"
export GOMODCACHE="$GO_CACHES/mod" GOCACHE="$GO_CACHES/build"
drop_go_caches() {
  [[ -d "$GO_CACHES" ]] || return 0
  (cd / && go clean -modcache >/dev/null 2>&1) || true
  rm -rf "$GO_CACHES" || true
}
trap drop_go_caches EXIT

build_kubernetes() {
  local want=(kube-apiserver kube-scheduler kubectl)
  local missing=0
  for b in "${want[@]}"; do [[ -x "$K8S_BIN/$b" ]] || missing=1; done
  if [[ $missing == 0 ]]; then log "kubernetes $K8S_VERSION cached in $K8S_BIN"; return; fi

  local minor patch staging
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  patch=$(echo "$K8S_VERSION" | cut -d. -f3)
  staging="v0.$minor.$patch"
  local mod="$CACHE/build/kubernetes-$K8S_VERSION"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  log "building kubernetes $K8S_VERSION (staging $staging) in $mod; the first build takes a while"
  cat > go.mod <<GOMOD
module local/k8sbin

go 1.$((minor - 10)).0

godebug default=go1.$((minor - 10))
GOMOD
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
  # ./staging paths, which a dependent module ignores: derive the replace list from its go.mod.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f "$gomod" ]] || { log "cannot locate go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  local m
  for m in $(grep -E '^\s+k8s\.io/\S+ v0\.0\.0$' "$gomod" | awk '{print $1}'); do
    go mod edit -replace="$m=$m@$staging"
  done
  go mod edit -replace="k8s.io/kubernetes=k8s.io/kubernetes@$K8S_VERSION"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
  local ldf="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldf="$ldf -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p out
  go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags="$ldf" -o out/ \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  mkdir -p "$K8S_BIN"
  for b in "${want[@]}"; do mv "out/$b" "$K8S_BIN/$b.tmp" && mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"; done
  log "kubernetes $K8S_VERSION built into $K8S_BIN"
}

build_etcd() {
  if [[ -x "$ETCD_BIN/etcd" ]]; then log "etcd $ETCD_VERSION cached in $ETCD_BIN"; return; fi
  local mod="$CACHE/build/etcd-$ETCD_VERSION"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  log "building etcd $ETCD_VERSION in $mod"
  # `go install go.etcd.io/etcd/server/v3@...` refuses modules with replace directives;
  # a wrapper module ignores them and uses the published same-tag modules.
  printf 'module local/etcdbin\n\ngo 1.25.0\n' > go.mod
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  mkdir -p out
  go build -trimpath -ldflags='-s -w' -o out/etcd go.etcd.io/etcd/server/v3
  mkdir -p "$ETCD_BIN"
  mv out/etcd "$ETCD_BIN/etcd.tmp" && mv "$ETCD_BIN/etcd.tmp" "$ETCD_BIN/etcd"
  log "etcd $ETCD_VERSION built into $ETCD_BIN"
}

fetch_cert_manager_crds() {
  if compgen -G "$CRDS/cert-manager.io_*.yaml" >/dev/null; then log "cert-manager CRDs cached in $CRDS"; return; fi
  local mod="$CACHE/build/cert-manager-$CERT_MANAGER_VERSION"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  printf 'module local/crds\n\ngo 1.25.0\n' > go.mod
  local dir
  dir=$(go mod download -json "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -d "$dir/deploy/crds" ]] || { log "cert-manager $CERT_MANAGER_VERSION has no deploy/crds"; exit 1; }
  mkdir -p "$CRDS.tmp" && cp "$dir"/deploy/crds/cert-manager.io_*.yaml "$CRDS.tmp/" && rm -rf "$CRDS" && mv "$CRDS.tmp" "$CRDS"
  log "cert-manager $CERT_MANAGER_VERSION CRDs fetched into $CRDS"
}

build_etcd
build_kubernetes
fetch_cert_manager_crds
"$K8S_BIN/kube-apiserver" --version >&2
# sed reads to the end: `head` would close the pipe early and, under pipefail, fail the
# script with SIGPIPE (exit 141) whenever etcd writes its second line after head has exited.
"$ETCD_BIN/etcd" --version | sed -n 1p >&2
echo "$K8S_BIN:$ETCD_BIN"
