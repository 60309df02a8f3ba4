# Sourced by the scripts that build binaries from Go modules (control-plane.sh, tools.sh).
#
# Go's module and build caches and its GOPATH are only needed while building (several GiB on a
# fresh machine): `private_go_caches NAME` keeps them private to the sourcing script, under
# $CACHE/build/NAME, and removes them when it exits. The binaries are what is cached. It also
# pins the toolchain to the local one and builds static binaries.
#
# Usage: CACHE=...; source scripts/go-cache.sh; private_go_caches NAME

private_go_caches() {
  export GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
  GO_CACHES="$CACHE/build/$1"
  export GOPATH="$GO_CACHES/path" GOMODCACHE="$GO_CACHES/mod" GOCACHE="$GO_CACHES/build"
  trap drop_go_caches EXIT
}

# The module cache is read-only: `go clean -modcache` empties it, then the rest is removed.
drop_go_caches() {
  [[ -d "${GO_CACHES:-}" ]] || return 0
  (cd / && go clean -modcache >/dev/null 2>&1) || true
  rm -rf "$GO_CACHES" || true
}
