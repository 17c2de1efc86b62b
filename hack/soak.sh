#!/usr/bin/env bash
# The soak of issue 24: the operator for a set time against a control plane of its own, the
# simulators and an S3 server (versitygw), under everything at once (a stream of reports on
# all five backends, injected faults, the operator SIGKILLed every 20-90 s, kube-apiserver
# restarted twice, the object store down for a minute, a namespace deleted with reports in
# flight); then checks from the simulators, the API server and the bucket, printed as a
# table of figures. Exits non-zero when a check fails.
#
#   hack/soak.sh --minutes 30                 the release build, 30 minutes (the book's figures)
#   hack/soak.sh --minutes 30 --replicas 2    two replicas with --leader-elect; the leader is killed
#   hack/soak.sh --minutes 30 --replicas 2 --replica-mode sharding
#                                             two replicas with --sharding; a replica is killed
#   hack/soak.sh --seed 1234 --minutes 30     replay a run's plan (the seed is printed first)
#   hack/soak.sh --debug --minutes 3          the debug build as `cargo build --workspace
#                                             --all-targets` leaves it (what .ci/run runs)
#
# Other flags go to the soak binary (`target/release/soak --help`). The control plane's
# state lives in $SOAK_STATE_DIR (default: a temporary directory) and is stopped on exit;
# logs and the figures go to target/soak/<run>/.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=release
ARGS=()
for a in "$@"; do
  case "$a" in
  --debug) PROFILE=debug ;;
  *) ARGS+=("$a") ;;
  esac
done

if [[ "$PROFILE" == release ]]; then
  echo "[soak] building the release binaries" >&2
  cargo build --locked --release -p report-operator -p report-bench --bin report-operator --bin soak
else
  # The same command as hack/test.sh, so that in CI it builds nothing.
  cargo build --locked --workspace --all-targets
fi

source hack/lib/own-control-plane.sh
own_control_plane soak "${SOAK_STATE_DIR:-}"
S3="${REPORT_OPERATOR_S3:-$(hack/s3.sh)}"

echo "[soak] $(nproc) cores, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo); load $(cut -d' ' -f1-3 /proc/loadavg); $PROFILE build" >&2
"target/$PROFILE/soak" --operator "target/$PROFILE/report-operator" --s3 "$S3" \
  --control-plane-script hack/control-plane.sh "${ARGS[@]}"
