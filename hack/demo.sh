#!/usr/bin/env bash
# The demo: a real control plane, the simulators of the five reporting APIs, the operator,
# and one-time reports from every backend, ending with READY ReportFiles and their Secrets.
#
#   hack/demo.sh         run it (everything keeps running afterwards, to explore)
#   hack/demo.sh stop    stop the operator, the simulators and the control plane
#
# It ends with a SUPPLIER report read from an S3 bucket (versitygw, hack/s3.sh) after the
# backend's own 60-second link has expired.
set -euo pipefail
cd "$(dirname "$0")/.."

NS="${DEMO_NAMESPACE:-reports-demo}"
STATE="target/demo"
SIM_ADDR="127.0.0.1:18080"
METRICS_ADDR="127.0.0.1:18081"
S3_ADDR="127.0.0.1:18082"

stop() {
  for p in operator sim s3; do
    if [[ -f "$STATE/$p.pid" ]]; then
      kill "$(cat "$STATE/$p.pid")" 2>/dev/null || true
      rm -f "$STATE/$p.pid"
    fi
  done
  hack/control-plane.sh down
}

if [[ "${1:-}" == "stop" ]]; then
  stop
  exit 0
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Control plane (etcd, kube-apiserver, kube-controller-manager; the first run builds them)"
hack/control-plane.sh up
eval "$(hack/control-plane.sh env)"

say "Building report-operator and report-sim"
cargo build --locked --quiet -p report-operator -p report-sim --bin report-operator --bin report-sim
BIN=target/debug/report-operator
SIM=target/debug/report-sim
mkdir -p "$STATE"

say "Simulators of the five reporting APIs on http://$SIM_ADDR"
[[ -f "$STATE/sim.pid" ]] && kill "$(cat "$STATE/sim.pid")" 2>/dev/null || true
"$SIM" --listen "$SIM_ADDR" >"$STATE/sim.log" 2>&1 &
echo $! >"$STATE/sim.pid"
for _ in $(seq 1 100); do curl -fsS "http://$SIM_ADDR/_sim/stats" >/dev/null 2>&1 && break; sleep 0.1; done

say "An S3-compatible server (versitygw) on http://$S3_ADDR, bucket demo-reports (the first run builds it)"
S3="$(hack/s3.sh)"
[[ -f "$STATE/s3.pid" ]] && kill "$(cat "$STATE/s3.pid")" 2>/dev/null || true
mkdir -p "$STATE/s3/data/demo-reports" "$STATE/s3/meta"
# Absolute paths: versitygw compares them to tell the sidecar directory apart from the data.
ROOT_ACCESS_KEY=demo-access ROOT_SECRET_KEY=demo-secret-key \
  "$S3" --port "$S3_ADDR" posix --sidecar "$PWD/$STATE/s3/meta" "$PWD/$STATE/s3/data" >"$STATE/s3.log" 2>&1 &
echo $! >"$STATE/s3.pid"
for _ in $(seq 1 100); do curl -s -o /dev/null "http://$S3_ADDR/" && break; sleep 0.1; done

say "CRDs"
kubectl apply --server-side --force-conflicts -f crds/
kubectl wait --for=condition=Established --timeout=60s \
  crd/reportbackends.reporting.report-operator.io crd/reportgenerators.reporting.report-operator.io \
  crd/reportfiles.reporting.report-operator.io crd/reportstores.reporting.report-operator.io >/dev/null

say "Operator (logs in $STATE/operator.log, metrics on http://$METRICS_ADDR/metrics)"
[[ -f "$STATE/operator.pid" ]] && kill "$(cat "$STATE/operator.pid")" 2>/dev/null || true
# The simulators listen on loopback over plain HTTP: the outbound policy denies both unless
# the operator is started to allow them, as here (never in a real cluster).
"$BIN" run --metrics-addr "$METRICS_ADDR" --outbound-allow-cidr 127.0.0.1/32 --outbound-allow-http \
  >"$STATE/operator.log" 2>&1 &
echo $! >"$STATE/operator.pid"

say "Backends and one-time reports in namespace $NS"
# A run before this one left objects whose reports lived in the simulators it stopped: start
# afresh. Their finalizers would wait for reports the new simulators never made, so they go.
if kubectl get namespace "$NS" >/dev/null 2>&1; then
  kubectl delete namespace "$NS" --wait=false >/dev/null
  for kind in reportfiles reportgenerators; do
    for o in $(kubectl get "$kind" -n "$NS" -o name 2>/dev/null); do
      kubectl patch -n "$NS" "$o" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
  done
  kubectl wait --for=delete namespace/"$NS" --timeout=120s
fi
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
# The examples name a placeholder host; here it is the simulators.
for b in rde cmp connect fusion supplier; do
  { cat "examples/$b/backend.yaml"; echo "---"; cat "examples/$b/onetime.yaml"; } |
    sed "s#https://your-platform.example#http://$SIM_ADDR#g" | kubectl apply -n "$NS" -f -
done

say "Waiting for the backends to be Ready and the reports to be READY"
kubectl wait -n "$NS" --for=condition=Ready rb --all --timeout=120s
deadline=$(($(date +%s) + 180))
until [[ "$(kubectl get rf -n "$NS" -o name | wc -l)" -ge 5 ]]; do
  (($(date +%s) < deadline)) || { echo "ReportFiles were not created; see $STATE/operator.log" >&2; exit 1; }
  sleep 1
done
kubectl wait -n "$NS" --for=jsonpath='{.status.status}'=READY rf --all --timeout=180s

say "kubectl get reporting -n $NS"
kubectl get reporting -n "$NS"

secret=$(kubectl get rf -n "$NS" -l reporting.report-operator.io/generator=daily-report-november -o jsonpath='{.items[0].status.downloadSecretRef.name}')
say "Secret $secret (decoded)"
kubectl get secret -n "$NS" "$secret" -o go-template='{{range $k, $v := .data}}{{printf "%-13s %s\n" $k (base64decode $v)}}{{end}}'
url=$(kubectl get secret -n "$NS" "$secret" -o jsonpath='{.data.url}' | base64 -d)
say "The first lines of the report behind that URL"
curl -fsS "$url" | head -c 600
echo
say "A SUPPLIER report copied into the bucket (examples/store/store.yaml, pointed at versitygw)"
sed -e "s#https://s3.example.internal:9000#http://$S3_ADDR#" -e "s#s3://platform-reports/billing#s3://demo-reports/billing#" \
  -e "s#AKIAEXAMPLE#demo-access#" -e "s#example-secret-key#demo-secret-key#" examples/store/store.yaml | kubectl apply -n "$NS" -f -
kubectl wait -n "$NS" --for=condition=Ready reportstore/reports-bucket --timeout=60s
until kubectl get rf -n "$NS" -l reporting.report-operator.io/generator=trips-october-stored -o name | grep -q .; do sleep 1; done
stored=$(kubectl get rf -n "$NS" -l reporting.report-operator.io/generator=trips-october-stored -o jsonpath='{.items[0].metadata.name}')
kubectl wait -n "$NS" --for=condition=Delivered "rf/$stored" --timeout=180s
kubectl get rf -n "$NS" "$stored" -o jsonpath='{.status.delivery}'; echo
# The backend's own link for the same report, minted now: it works for 60 seconds.
link=$(kubectl get secret -n "$NS" "$(kubectl get rf -n "$NS" -l reporting.report-operator.io/generator=trips-october -o jsonpath='{.items[0].metadata.name}')" -o jsonpath='{.data.url}' | base64 -d)
say "Waiting 65 s for SUPPLIER's 60-second links to expire"
sleep 65
echo "the backend's link now answers HTTP $(curl -s -o /dev/null -w '%{http_code}' "$link")"
stored_url=$(kubectl get secret -n "$NS" "$stored" -o jsonpath='{.data.url}' | base64 -d)
echo "the Secret's URL (the copy in the bucket) answers HTTP $(curl -s -o /dev/null -w '%{http_code}' "$stored_url"):"
curl -fsS "$stored_url" | head -c 400
echo

say "Done. Explore with kubectl (KUBECONFIG=$KUBECONFIG); stop everything with: hack/demo.sh stop"
