#!/usr/bin/env bash
# promtool, built from the Go module proxy at a pinned version (no prebuilt binaries are
# downloaded), cached by version in ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}.
#
#   hack/promtool.sh    build (or reuse) promtool and print the binary's path
#
# Used by hack/test.sh (exported as REPORT_OPERATOR_PROMTOOL for tests/alerts.rs):
#   export REPORT_OPERATOR_PROMTOOL="$(hack/promtool.sh)"
# By hand:
#   "$(hack/promtool.sh)" check rules rules.yaml
set -euo pipefail

# Prometheus tags its Go module v0.3MM.P for release 3.MM.P: v0.316.0 is Prometheus 3.16.0.
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"

CACHE="${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}"
PROMTOOL_DIR="$CACHE/promtool/$PROMTOOL_VERSION"
PROMTOOL_BIN="$PROMTOOL_DIR/bin/promtool"

log() { printf '[promtool] %s\n' "$*" >&2; }

# The Go toolchain must not try to fetch another toolchain: this machine only reaches
# the module proxy.
export GOTOOLCHAIN=local

if [[ ! -x "$PROMTOOL_BIN" ]]; then
  mkdir -p "$CACHE"
  # One build at a time per cache, even when several test runs start together.
  exec 9>"$CACHE/.promtool-build.lock"
  flock 9
  if [[ ! -x "$PROMTOOL_BIN" ]]; then
    log "building promtool $PROMTOOL_VERSION from the Go module proxy; a cold build takes a few minutes"
    mod="$PROMTOOL_DIR/module"
    mkdir -p "$mod" "$PROMTOOL_DIR/bin"
    (
      cd "$mod"
      # A wrapper module rather than `go install …@version`: it builds the same way
      # whether or not Prometheus's go.mod carries replace directives (those only count in
      # the main module), and keeps the resolved go.sum next to the binary.
      curl -fsS "https://proxy.golang.org/github.com/prometheus/prometheus/@v/$PROMTOOL_VERSION.mod" -o prometheus.mod
      {
        echo "module report-operator.io/promtool-build"
        echo
        echo "go $(awk '/^go /{print $2; exit}' prometheus.mod)"
        echo
        echo "require github.com/prometheus/prometheus $PROMTOOL_VERSION"
        # Carry over Prometheus's own replace directives that point at other modules.
        if grep -q '^replace' prometheus.mod; then
          echo
          awk '/^replace \(/{inside=1; next} inside && /^\)/{inside=0; next}
               inside && $0 !~ /=> *\./ {print "replace " $0}
               /^replace [^(]/ && $0 !~ /=> *\./ {print}' prometheus.mod
        fi
      } >go.mod
      cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
EOF
      GOFLAGS="${GOFLAGS:-} -mod=mod" go mod tidy -e >/dev/null 2>&1 || true
      # The version promtool reports (`promtool --version`), as Prometheus's release builds
      # set it. `remove_all_sd` leaves out the service-discovery plugins (cloud SDKs), which
      # rule checks and rule tests never use: a smaller, faster cold build.
      ldflags="-s -w -X github.com/prometheus/common/version.Version=3.${PROMTOOL_VERSION#v0.3}"
      ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"
      GOFLAGS="${GOFLAGS:-} -mod=mod" CGO_ENABLED=0 go build -trimpath -tags remove_all_sd -ldflags "$ldflags" \
        -o "$PROMTOOL_BIN.tmp" github.com/prometheus/prometheus/cmd/promtool
      mv "$PROMTOOL_BIN.tmp" "$PROMTOOL_BIN"
    )
  fi
  flock -u 9
fi

echo "$PROMTOOL_BIN"
