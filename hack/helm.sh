#!/usr/bin/env bash
# Helm, built from the Go module proxy at a pinned version (no prebuilt binaries are
# downloaded), cached by version in ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}.
#
#   hack/helm.sh        build (or reuse) helm and print the binary's path
#
# Used by hack/test.sh (exported as REPORT_OPERATOR_HELM for tests/chart.rs):
#   export REPORT_OPERATOR_HELM="$(hack/helm.sh)"
# By hand:
#   "$(hack/helm.sh)" template report-operator charts/report-operator
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"

CACHE="${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}"
HELM_DIR="$CACHE/helm/$HELM_VERSION"
HELM_BIN="$HELM_DIR/bin/helm"

log() { printf '[helm] %s\n' "$*" >&2; }

# The Go toolchain must not try to fetch another toolchain: this machine only reaches
# the module proxy.
export GOTOOLCHAIN=local

if [[ ! -x "$HELM_BIN" ]]; then
  mkdir -p "$CACHE"
  # One build at a time per cache, even when several test runs start together.
  exec 9>"$CACHE/.helm-build.lock"
  flock 9
  if [[ ! -x "$HELM_BIN" ]]; then
    log "building helm $HELM_VERSION from the Go module proxy; a cold build takes a few minutes"
    mod="$HELM_DIR/module"
    mkdir -p "$mod" "$HELM_DIR/bin"
    (
      cd "$mod"
      # A wrapper module rather than `go install …@version`: it builds the same way
      # whether or not helm's go.mod carries replace directives (those only count in
      # the main module), and keeps the resolved go.sum next to the binary.
      curl -fsS "https://proxy.golang.org/helm.sh/helm/v3/@v/$HELM_VERSION.mod" -o helm.mod
      {
        echo "module report-operator.io/helm-build"
        echo
        echo "go $(awk '/^go /{print $2; exit}' helm.mod)"
        echo
        echo "require helm.sh/helm/v3 $HELM_VERSION"
        # Carry over helm's own replace directives that point at other modules.
        if grep -q '^replace' helm.mod; then
          echo
          awk '/^replace \(/{inside=1; next} inside && /^\)/{inside=0; next}
               inside && $0 !~ /=> *\./ {print "replace " $0}
               /^replace [^(]/ && $0 !~ /=> *\./ {print}' helm.mod
        fi
      } >go.mod
      cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "helm.sh/helm/v3/cmd/helm"
EOF
      GOFLAGS="${GOFLAGS:-} -mod=mod" go mod tidy -e >/dev/null 2>&1 || true
      # The ldflags of helm's Makefile: its version, and the Kubernetes version that
      # `helm template` and `helm lint` assume (Capabilities.KubeVersion, deprecation
      # checks), taken from the client-go it is built with (v0.37.x → 1.37).
      k8s_minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]; exit}' helm.mod)
      ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
      for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
      done
      GOFLAGS="${GOFLAGS:-} -mod=mod" CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" \
        -o "$HELM_BIN.tmp" helm.sh/helm/v3/cmd/helm
      mv "$HELM_BIN.tmp" "$HELM_BIN"
    )
  fi
  flock -u 9
fi

echo "$HELM_BIN"
