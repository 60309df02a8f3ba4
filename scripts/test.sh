#!/usr/bin/env bash
# Runs every check and test of the project, end-to-end tests against a real kube-apiserver,
# etcd and kube-scheduler included. The control-plane binaries are built from Go modules on
# the first run and reused from the cache afterwards (see scripts/control-plane.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# One full build per run: incremental artifacts would only cost disk (several GiB).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "disk (a run needs about 2.5 GiB for the build, and 3.5 GiB while the control plane is first built)"
df -h . >&2 || true

step "control plane (build once, then cached)"
dirs=$(scripts/control-plane.sh)
export STOWAGE_K8S_BIN="${dirs%%:*}" STOWAGE_ETCD_BIN="${dirs##*:}"

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (unit, integration, property-based fuzzing, e2e)"
# Bounded property-based fuzzing of the admission decoder and planner: raise for longer runs.
export PROPTEST_CASES="${PROPTEST_CASES:-512}"
cargo test --workspace --all-targets --locked

step "doc tests"
cargo test --workspace --doc --locked

step "main job on the bundled examples"
cargo run --quiet --locked -- explain --snapshot examples/cluster.yaml --pod examples/pod.yaml \
  --config examples/config.yaml >/dev/null

step "all checks passed"
