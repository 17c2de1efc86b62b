#!/usr/bin/env bash
# Helm, built from the Go module proxy at a pinned version (hack/lib/go-tool.sh), cached by
# version in ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}.
#
#   hack/helm.sh        build (or reuse) helm and print the binary's path
#
# Used by hack/test.sh (exported as REPORT_OPERATOR_HELM for tests/chart.rs):
#   export REPORT_OPERATOR_HELM="$(hack/helm.sh)"
# By hand:
#   "$(hack/helm.sh)" template report-operator charts/report-operator
set -euo pipefail
source "$(dirname "$0")/lib/go-tool.sh"

HELM_VERSION="${HELM_VERSION:-v3.22.0}"

# The ldflags of helm's Makefile: its version, and the Kubernetes version that
# `helm template` and `helm lint` assume (Capabilities.KubeVersion, deprecation checks),
# taken from the client-go it is built with (v0.37.x → 1.37).
helm_ldflags() {
  local k8s_minor
  k8s_minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]; exit}' "$1")
  local flags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  echo "$flags"
}

go_tool helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm helm_ldflags
