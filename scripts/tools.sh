#!/usr/bin/env bash
# Builds the tools that check the deployment artifacts from Go modules and caches them by
# version outside the checkout, next to the control plane (see scripts/control-plane.sh):
# helm (helm.sh/helm/v4, lints, renders, installs and upgrades charts/stowage) and promtool
# (github.com/prometheus/prometheus, checks and unit-tests monitoring/rules.yaml and the
# dashboard queries). A second run finds the cache and does nothing.
#
# Usage: scripts/tools.sh [print-dir]
#   print-dir prints HELM_BIN:PROMTOOL_BIN (the directories holding `helm` and `promtool`).
#   STOWAGE_CACHE       cache root (default: $XDG_CACHE_HOME/stowage or ~/.cache/stowage)
#   HELM_VERSION        helm.sh/helm/v4 release
#   PROMETHEUS_VERSION  Prometheus release; its Go module is tagged v0.<major><minor>.<patch>
#                       (3.16.0 is v0.316.0)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v3.16.0}"
CACHE="${STOWAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stowage}"
HELM_BIN="$CACHE/helm-$HELM_VERSION/bin"
PROMTOOL_BIN="$CACHE/prometheus-$PROMETHEUS_VERSION/bin"

case "${1:-}" in
  print-dir) echo "$HELM_BIN:$PROMTOOL_BIN"; exit 0 ;;
esac

log() { printf '[tools] %s\n' "$*" >&2; }

# shellcheck source=scripts/go-cache.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-cache.sh"
private_go_caches go-tools

# Builds PKG of MODULE@VERSION into DEST/NAME through a wrapper module, so the dependency
# versions are the ones the tool's own go.mod selected (`go install` refuses modules with
# replace directives).
build_tool() {
  local name="$1" module="$2" version="$3" pkg="$4" dest="$5" ldflags="$6"
  if [[ -x "$dest/$name" ]]; then log "$name $version cached in $dest"; return; fi
  local mod="$CACHE/build/$name-$version"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  log "building $name $version in $mod"
  local gomod gover
  gomod=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f "$gomod" ]] || { log "cannot locate go.mod of $module@$version"; exit 1; }
  gover=$(sed -n 's/^go \([0-9]*\.[0-9]*\).*/\1/p' "$gomod")
  printf 'module local/%sbin\n\ngo %s.0\n' "$name" "$gover" > go.mod
  go get "$pkg@$version"
  mkdir -p out
  go build -trimpath -ldflags="-s -w $ldflags" -o "out/$name" "$pkg"
  mkdir -p "$dest"
  mv "out/$name" "$dest/$name.tmp" && mv "$dest/$name.tmp" "$dest/$name"
  cd / && rm -rf "$mod"
  log "$name $version built into $dest"
}

# Prometheus 3.x publishes its Go module as v0.<major*100+minor>.<patch>.
prom_module_version() {
  local v="${1#v}" major minor patch
  IFS=. read -r major minor patch <<<"$v"
  echo "v0.$((major * 100 + minor)).$patch"
}

build_tool helm helm.sh/helm/v4 "$HELM_VERSION" helm.sh/helm/v4/cmd/helm "$HELM_BIN" \
  "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
(cd / && go clean -cache >/dev/null 2>&1) || true
build_tool promtool github.com/prometheus/prometheus "$(prom_module_version "$PROMETHEUS_VERSION")" \
  github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_BIN" \
  "-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}"
"$HELM_BIN/helm" version --short >&2
"$PROMTOOL_BIN/promtool" --version 2>&1 | sed -n 1p >&2
echo "$HELM_BIN:$PROMTOOL_BIN"
