#!/usr/bin/env bash
# Runs every check and test of the project, end-to-end tests included: against a real etcd,
# kube-apiserver, kube-scheduler, kube-controller-manager and kwok (simulated kubelets), on the
# oldest and the newest supported Kubernetes minor. The binaries are built from Go modules on
# the first run and reused from the cache afterwards (see scripts/control-plane.sh), and so are
# helm and promtool, which check the chart, the alert rules and the dashboard (scripts/tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# One full build per run: incremental artifacts would only cost disk (several GiB).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "disk (a run needs about 3.5 GiB for the build, and 6 GiB more while the control plane is first built)"
df -h . >&2 || true

step "control plane (build once, then cached)"
scripts/control-plane.sh >/dev/null
read -r -a versions <<<"$(scripts/control-plane.sh print-versions)"
# The test harness finds each version's binaries in the cache (STOWAGE_K8S_VERSION).
unset STOWAGE_K8S_BIN STOWAGE_ETCD_BIN STOWAGE_KWOK_BIN
export STOWAGE_K8S_VERSION="${versions[0]}"

step "helm and promtool (build once, then cached)"
scripts/tools.sh >/dev/null
# The chart and monitoring tests find them in the cache (scripts/tools.sh print-dir).
unset STOWAGE_HELM_BIN STOWAGE_PROMTOOL_BIN

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (unit, integration, property-based fuzzing, e2e on Kubernetes $STOWAGE_K8S_VERSION)"
# Bounded property-based fuzzing of the admission decoder and planner: raise for longer runs.
export PROPTEST_CASES="${PROPTEST_CASES:-512}"
cargo test --workspace --all-targets --locked

# The end-to-end suites again on every other version of the matrix (the newest minor).
e2e_targets=()
for t in tests/e2e_*.rs; do e2e_targets+=(--test "$(basename "$t" .rs)"); done
for v in "${versions[@]:1}"; do
  step "e2e on Kubernetes $v"
  # The chart's install/upgrade and the alert rules' apiserver metric names depend on the
  # apiserver too.
  STOWAGE_K8S_VERSION="$v" cargo test --locked -p stowage "${e2e_targets[@]}" --test helm_chart --test monitoring_rules
  STOWAGE_K8S_VERSION="$v" cargo test --locked -p stowage-testkit --test harness
done

step "doc tests"
cargo test --workspace --doc --locked

step "main job on the bundled examples"
cargo run --quiet --locked -- explain --snapshot examples/cluster.yaml --pod examples/pod.yaml \
  --config examples/config.yaml >/dev/null

step "all checks passed"
