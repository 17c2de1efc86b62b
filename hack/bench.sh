#!/usr/bin/env bash
# The benchmark of issue 15: the release operator on a control plane of its own, with the
# simulators, through the scenarios of docs/src/benchmarks.md; prints their table.
#
#   hack/bench.sh                 all scenarios (a few minutes)
#   hack/bench.sh --scenarios c   some of them (a, b, c, d, e)
#   BENCH_IDLE_GENERATORS=1000 BENCH_IDLE_SECONDS=10 hack/bench.sh   a quick run
#
# The control plane's state lives in $BENCH_STATE_DIR (default: a temporary directory) and the
# control plane is stopped on exit; a shared or test control plane is never touched. Not part
# of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "[bench] building the release binaries" >&2
cargo build --locked --release -p report-operator -p report-bench --bin report-operator --bin bench

if [[ -n "${BENCH_STATE_DIR:-}" ]]; then
  STATE="$BENCH_STATE_DIR" TEMP_STATE=""
else
  STATE="$(mktemp -d "${TMPDIR:-/tmp}/report-operator-bench.XXXXXX")" TEMP_STATE=1
fi
export CP_STATE_DIR="$STATE"
stop() {
  hack/control-plane.sh down || true
  if [[ -n "$TEMP_STATE" ]]; then rm -rf "$STATE"; fi
}
trap stop EXIT

hack/control-plane.sh up
eval "$(hack/control-plane.sh env)"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/reportbackends.reporting.report-operator.io crd/reportgenerators.reporting.report-operator.io \
  crd/reportfiles.reporting.report-operator.io >/dev/null

echo "[bench] $(nproc) cores, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" >&2
target/release/bench --operator target/release/report-operator "$@"
