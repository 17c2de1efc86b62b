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

source hack/lib/own-control-plane.sh
own_control_plane bench "${BENCH_STATE_DIR:-}"

echo "[bench] $(nproc) cores, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" >&2
target/release/bench --operator target/release/report-operator "$@"
