#!/usr/bin/env bash
# Regenerates the committed CRD manifests from the Rust types (src/api).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --locked -- crd >crds/report-operator.yaml
if [[ -d charts/report-operator/crds ]]; then
  cp crds/report-operator.yaml charts/report-operator/crds/report-operator.yaml
fi
echo "wrote crds/report-operator.yaml"
