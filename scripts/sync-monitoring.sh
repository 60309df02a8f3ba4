#!/usr/bin/env bash
# Copies monitoring/rules.yaml and monitoring/dashboard.json to where the chart and the kustomize
# component need them (Helm reads only files inside the chart; kustomize cannot wrap a file in a
# PrometheusRule). tests/helm_chart.rs fails while a copy differs.
set -euo pipefail
cd "$(dirname "$0")/.."
cp monitoring/rules.yaml charts/stowage/files/rules.yaml
cp monitoring/dashboard.json charts/stowage/files/dashboard.json
{
  printf '# Generated from monitoring/rules.yaml by scripts/sync-monitoring.sh (a test checks they\n'
  printf '# are equal): edit that file and run the script.\n'
  printf 'apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: stowage\n'
  printf '  namespace: stowage-system\n  labels: {app.kubernetes.io/part-of: stowage}\nspec:\n'
  sed 's/^/  /; s/^  $//' monitoring/rules.yaml
} > manifests/components/monitoring/prometheusrule.yaml
