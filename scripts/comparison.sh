#!/usr/bin/env bash
# Regenerates docs/comparison.md: runs the placement scenarios of the e2e suite, each with
# stowage and with the plain kube-scheduler under the operators' default rules (CloudNativePG,
# Crunchy PGO), on every Kubernetes version of the test matrix, and tabulates what happened.
#
# Usage: scripts/comparison.sh [--from ROWS]
#   --from ROWS   render rows already recorded (any e2e run with STOWAGE_COMPARISON_OUT=ROWS,
#                 e.g. scripts/test.sh) instead of running the scenarios again
set -euo pipefail
cd "$(dirname "$0")/.."
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
if [[ "${1:-}" == --from ]]; then
  cp "$2" "$rows"
else
  scripts/control-plane.sh >/dev/null
  read -r -a versions <<<"$(scripts/control-plane.sh print-versions)"
  for v in "${versions[@]}"; do
    STOWAGE_K8S_VERSION="$v" STOWAGE_COMPARISON_OUT="$rows" \
      cargo test --locked -p stowage --test e2e_extender --test e2e_placement -- --test-threads=2 >&2
  done
fi
{
  cat <<'HEAD'
# Stowage next to the plain scheduler

Each row is one placement scenario of the end-to-end suite (`tests/e2e_extender.rs`,
`tests/e2e_placement.rs`), run on the real control plane (kube-apiserver, kube-scheduler,
kube-controller-manager, kwok): once through kube-scheduler with the stowage extender, and once
through the plain kube-scheduler with the default scheduling rule of a popular operator —
CloudNativePG (preferred pod anti-affinity on the hostname, weight 100) and Crunchy PGO v5
(topology spread over hostname and zone, `maxSkew: 1`, `ScheduleAnyway`). The tests assert
stowage's outcome; the plain scheduler's is recorded as it happened (it can vary between runs).
"a/b/c" counts the group's members per zone, largest first.

Regenerate with `scripts/comparison.sh`.

| scenario | Kubernetes | plain kube-scheduler + operator default | stowage |
| --- | --- | --- | --- |
HEAD
  sort -u "$rows"
} > docs/comparison.md
echo "wrote docs/comparison.md ($(wc -l <"$rows") rows)" >&2
