#!/usr/bin/env bash
# Builds the real Kubernetes control plane used by the e2e tests from Go modules and caches
# the binaries by version outside the checkout: kube-apiserver, kube-scheduler,
# kube-controller-manager and kubectl for every Kubernetes version of the test matrix (the
# oldest and the newest supported minor), etcd, and KWOK (simulated kubelets). It also fetches
# cert-manager's CRDs (from its Go module) so the cert-manager overlay can be applied to the
# test apiserver. A second run finds the cache and does nothing.
#
# Usage: scripts/control-plane.sh [print-dir [VERSION] | print-crds | print-versions]
#   print-dir prints K8S_BIN:ETCD_BIN:KWOK_BIN for VERSION (default: the first of K8S_VERSIONS).
#   STOWAGE_CACHE   cache root (default: $XDG_CACHE_HOME/stowage or ~/.cache/stowage)
#   K8S_VERSIONS    Kubernetes releases to build, oldest first (staging modules use v0.<minor>.<patch>)
#   ETCD_VERSION    etcd release (>= 3.5.13 for watch-list / consistent reads)
#   KWOK_VERSION    sigs.k8s.io/kwok release
set -euo pipefail

K8S_VERSIONS="${K8S_VERSIONS:-v1.35.8 v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
CACHE="${STOWAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage}"
ETCD_BIN="$CACHE/etcd-$ETCD_VERSION/bin"
KWOK_BIN="$CACHE/kwok-$KWOK_VERSION/bin"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.21.2}"
CRDS="$CACHE/cert-manager-$CERT_MANAGER_VERSION/crds"
k8s_bin() { echo "$CACHE/kubernetes-$1/bin"; }

case "${1:-}" in
  print-dir)
    v="${2:-${K8S_VERSIONS%% *}}"
    echo "$(k8s_bin "$v"):$ETCD_BIN:$KWOK_BIN"; exit 0 ;;
  print-crds) echo "$CRDS"; exit 0 ;;
  print-versions) echo "$K8S_VERSIONS"; exit 0 ;;
esac

log() { printf '[control-plane] %s\n' "$*" >&2; }

# shellcheck source=scripts/go-cache.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-cache.sh"
private_go_caches go

build_kubernetes() {
  local K8S_VERSION="$1" K8S_BIN
  K8S_BIN=$(k8s_bin "$1")
  local want=(kube-apiserver kube-scheduler kube-controller-manager kubectl)
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
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
  # ./staging paths, which a dependent module ignores: derive the replace list from its go.mod,
  # and the Go language version too (1.35 says go 1.25, 1.37 says go 1.26).
  local gomod gover
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f "$gomod" ]] || { log "cannot locate go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  gover=$(sed -n 's/^go \([0-9]*\.[0-9]*\).*/\1/p' "$gomod")
  cat > go.mod <<GOMOD
module local/k8sbin

go $gover.0

godebug default=go$gover
GOMOD
  local m
  for m in $(grep -E '^\s+k8s\.io/\S+ v0\.0\.0$' "$gomod" | awk '{print $1}'); do
    go mod edit -replace="$m=$m@$staging"
  done
  go mod edit -replace="k8s.io/kubernetes=k8s.io/kubernetes@$K8S_VERSION"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
  local ldf="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldf="$ldf -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p out
  go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags="$ldf" -o out/ \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
  mkdir -p "$K8S_BIN"
  for b in "${want[@]}"; do mv "out/$b" "$K8S_BIN/$b.tmp" && mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"; done
  log "kubernetes $K8S_VERSION built into $K8S_BIN"
  cd / && rm -rf "$mod"
}

# KWOK's kubelet simulator. Its go.mod has no replace directives, so a wrapper module builds
# cmd/kwok with the dependency versions KWOK itself selected.
build_kwok() {
  if [[ -x "$KWOK_BIN/kwok" ]]; then log "kwok $KWOK_VERSION cached in $KWOK_BIN"; return; fi
  local mod="$CACHE/build/kwok-$KWOK_VERSION"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  log "building kwok $KWOK_VERSION in $mod"
  local gomod gover
  gomod=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  gover=$(sed -n 's/^go \([0-9]*\.[0-9]*\).*/\1/p' "$gomod")
  printf 'module local/kwokbin\n\ngo %s.0\n' "$gover" > go.mod
  go get "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mkdir -p out
  go build -trimpath -ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" -o out/kwok sigs.k8s.io/kwok/cmd/kwok
  mkdir -p "$KWOK_BIN"
  mv out/kwok "$KWOK_BIN/kwok.tmp" && mv "$KWOK_BIN/kwok.tmp" "$KWOK_BIN/kwok"
  cd / && rm -rf "$mod"
  log "kwok $KWOK_VERSION built into $KWOK_BIN"
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
build_kwok
for v in $K8S_VERSIONS; do
  build_kubernetes "$v"
  # Module sources shared between versions are few; freeing the build cache between versions
  # keeps the peak disk use near one version's worth.
  (cd / && go clean -cache >/dev/null 2>&1) || true
done
fetch_cert_manager_crds
for v in $K8S_VERSIONS; do "$(k8s_bin "$v")/kube-apiserver" --version >&2; done
# sed reads to the end: `head` would close the pipe early and, under pipefail, fail the
# script with SIGPIPE (exit 141) whenever etcd writes its second line after head has exited.
"$ETCD_BIN/etcd" --version | sed -n 1p >&2
"$KWOK_BIN/kwok" --version 2>&1 | sed -n 1p >&2 || true
echo "$(k8s_bin "${K8S_VERSIONS%% *}"):$ETCD_BIN:$KWOK_BIN"
