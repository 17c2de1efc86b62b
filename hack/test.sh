#!/usr/bin/env bash
# The whole test suite: unit tests, and behaviour tests against a real control plane
# (etcd, kube-apiserver, kube-controller-manager built by hack/control-plane.sh) and the
# simulators over HTTP. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Formatting and lints first: they take seconds and fail before anything slow starts.
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

hack/control-plane.sh up
trap 'hack/control-plane.sh down' EXIT
eval "$(hack/control-plane.sh env)"
export REPORT_OPERATOR_KUBECONFIG="$KUBECONFIG"

export REPORT_OPERATOR_HELM="$(hack/helm.sh)"
export REPORT_OPERATOR_PROMTOOL="$(hack/promtool.sh)"
# The S3-compatible server of tests/e2e_delivery.rs (versitygw).
export REPORT_OPERATOR_S3="$(hack/s3.sh)"
export REPORT_OPERATOR_PYCLIENT="$(hack/pyclient.sh)" # CloudBlue's Connect client: sim/tests/sim_connect_client.rs
# mdBook and mdbook-mermaid for the book (tests/docs.rs builds it with hack/docs.sh).
hack/mdbook.sh >/dev/null
# Incremental compilation only pays off while editing; a test run builds from scratch or
# nearly so, and skips the incremental caches.
export CARGO_INCREMENTAL=0
cargo build --locked --workspace --all-targets
# The documentation first, in seconds: the book builds without warnings, its generated
# reference is the code's, its links and anchors resolve, and the getting-started page's
# commands are tested or marked illustrative (tests/docs.rs; the full run repeats it).
cargo test --locked --test docs
cargo test --locked --workspace --all-targets --no-fail-fast "$@"
# The short soak (docs/src/operations/reliability.md): 3 minutes of every fault at once on a
# control plane of its own, with the debug build just made; fails on a failed check, never on
# time. SOAK_MINUTES=0 skips it.
if [[ "${SOAK_MINUTES:-3}" != 0 ]]; then hack/soak.sh --debug --minutes "${SOAK_MINUTES:-3}"; fi
