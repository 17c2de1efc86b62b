#!/usr/bin/env bash
# promtool, built from the Go module proxy at a pinned version (hack/lib/go-tool.sh), cached
# by version in ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}.
#
#   hack/promtool.sh    build (or reuse) promtool and print the binary's path
#
# Used by hack/test.sh (exported as REPORT_OPERATOR_PROMTOOL for tests/alerts.rs):
#   export REPORT_OPERATOR_PROMTOOL="$(hack/promtool.sh)"
# By hand:
#   "$(hack/promtool.sh)" check rules rules.yaml
set -euo pipefail
source "$(dirname "$0")/lib/go-tool.sh"

# Prometheus tags its Go module v0.3MM.P for release 3.MM.P: v0.316.0 is Prometheus 3.16.0.
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"

# The version promtool reports (`promtool --version`), as Prometheus's release builds set it.
promtool_ldflags() {
  echo "-X github.com/prometheus/common/version.Version=3.${PROMTOOL_VERSION#v0.3} -X github.com/prometheus/common/version.Branch=HEAD"
}

# `remove_all_sd` leaves out the service-discovery plugins (cloud SDKs), which rule checks
# and rule tests never use: a smaller, faster cold build.
go_tool promtool github.com/prometheus/prometheus "$PROMTOOL_VERSION" github.com/prometheus/prometheus/cmd/promtool promtool_ldflags remove_all_sd
