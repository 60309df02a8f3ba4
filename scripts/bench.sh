#!/usr/bin/env bash
# Builds in release mode and runs every benchmark, writing raw results and Markdown tables to
# <target>/bench-results/ (target = $CARGO_TARGET_DIR or ./target), then joins the tables into
# summary.md, ready to paste into BENCHMARKS.md.
#
#   scripts/bench.sh                 # everything (about 20-30 minutes on 2 cores)
#   scripts/bench.sh extender memory # only these benches
#
# Benches: extender, webhook, snapshot (criterion means), extender_latency (HdrHistogram
# distributions), memory (RSS per size, fresh process each), http_load (real server processes
# next to empty handlers), scheduling (real control plane: throughput with/without the extender,
# pod-create latency with/without the webhook), flood (slow clients vs legitimate reviews),
# amplification (peak RSS with the security review's inputs). Knobs are documented at the top of each file in
# benches/.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-results"
all=(extender webhook snapshot extender_latency memory http_load scheduling flood amplification)
selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=("${all[@]}")
mkdir -p "$out"

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ " ${selected[*]} " == *" scheduling "* ]]; then
  step "control plane binaries (built once, then cached)"
  dirs=$(scripts/control-plane.sh)
  export STOWAGE_K8S_BIN="${dirs%%:*}" STOWAGE_ETCD_BIN="${dirs##*:}"
fi

step "build (release, bench profile)"
cargo bench --locked --no-run -p stowage

for bench in "${selected[@]}"; do
  step "bench $bench"
  case "$bench" in
    extender | webhook | snapshot)
      # Criterion: full reports under $target/criterion; one line per benchmark here.
      cargo bench --locked -p stowage --bench "$bench" -- --output-format bencher | tee "$out/$bench.txt"
      {
        echo "### Criterion: $bench (mean time per iteration)"
        echo
        echo "| benchmark | mean | ± |"
        echo "|---|---|---|"
        awk '/^test / && /bench:/ {
          ns = $5; gsub(",", "", ns); dev = $8; gsub(/[^0-9]/, "", dev)
          unit = "ns"; v = ns; d = dev
          if (ns >= 1e6) { unit = "ms"; v = ns / 1e6; d = dev / 1e6 } else if (ns >= 1e3) { unit = "µs"; v = ns / 1e3; d = dev / 1e3 }
          printf "| %s | %.3f %s | %.3f %s |\n", $2, v, unit, d, unit
        }' "$out/$bench.txt"
        echo
      } > "$out/$bench.md"
      ;;
    *)
      cargo bench --locked -p stowage --bench "$bench" 2>&1 | tee "$out/$bench.log"
      ;;
  esac
done

step "summary"
{
  echo "## Results of scripts/bench.sh ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
  echo
  echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores," \
    "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)."
  echo
  for bench in "${all[@]}"; do
    [ -f "$out/$bench.md" ] && cat "$out/$bench.md" && echo
  done
} > "$out/summary.md"
echo "wrote $out/summary.md" >&2
