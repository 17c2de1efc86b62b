#!/usr/bin/env bash
# A real Kubernetes control plane on loopback: etcd, kube-apiserver and
# kube-controller-manager built from the Go module proxy, the way envtest runs them.
#
#   hack/control-plane.sh build   build (or reuse) the pinned binaries
#   hack/control-plane.sh up      build, start, wait until ready, write a kubeconfig
#   hack/control-plane.sh down    stop everything this state dir started
#   hack/control-plane.sh restart-apiserver
#                                 stop kube-apiserver and start it again with the same
#                                 flags, ports, certificates and etcd (the data stays)
#   hack/control-plane.sh env     print `export KUBECONFIG=… PATH=…` for a shell
#
# Binaries are cached outside the clone, keyed by version, in
# ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}; the running control plane
# keeps its state (data, certificates, logs, pids, kubeconfig) in
# ${CP_STATE_DIR:-<repo>/target/control-plane}.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}"
K8S_BIN="$CACHE/k8s/$K8S_VERSION/bin"
ETCD_BIN="$CACHE/etcd/$ETCD_VERSION/bin"
STATE="${CP_STATE_DIR:-$ROOT/target/control-plane}"

log() { printf '[control-plane] %s\n' "$*" >&2; }

# The Go toolchain must not try to fetch another toolchain: this machine only
# reaches the module proxy.
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=mod"

build_k8s() {
  if [[ -x "$K8S_BIN/kube-apiserver" && -x "$K8S_BIN/kube-controller-manager" && -x "$K8S_BIN/kubectl" ]]; then
    return
  fi
  log "building Kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager, kubectl); a cold build takes several minutes"
  local mod="$CACHE/k8s/$K8S_VERSION/module"
  mkdir -p "$mod" "$K8S_BIN"
  local minor="v0.${K8S_VERSION#v1.}"
  (
    cd "$mod"
    # k8s.io/kubernetes replaces its staging modules with ./staging/...; those
    # replaces only count in the main module, so this wrapper module replaces
    # each one with its published v0.Y.Z, generated from that version's go.mod.
    curl -fsS "https://proxy.golang.org/k8s.io/kubernetes/@v/$K8S_VERSION.mod" -o kubernetes.mod ||
      go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    {
      echo "module report-operator.io/k8s-build"
      echo
      echo "go $(awk '/^go /{print $2; exit}' kubernetes.mod)"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      echo "replace ("
      awk '/=> \.\/staging\/src\//{print "\t" $1 " => " $1 " '"$minor"'"}' kubernetes.mod
      echo ")"
    } >go.mod
    cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
    go mod tidy -e >/dev/null 2>&1 || true
    go mod download
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
    for cmd in kube-apiserver kube-controller-manager kubectl; do
      go build -trimpath -ldflags "$ldflags" -o "$K8S_BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$K8S_BIN/$cmd.tmp" "$K8S_BIN/$cmd"
    done
  )
}

build_etcd() {
  if [[ -x "$ETCD_BIN/etcd" ]]; then
    return
  fi
  log "building etcd $ETCD_VERSION"
  local mod="$CACHE/etcd/$ETCD_VERSION/module"
  mkdir -p "$mod" "$ETCD_BIN"
  (
    cd "$mod"
    cat >go.mod <<EOF
module report-operator.io/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
    cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
    go mod tidy -e >/dev/null 2>&1 || true
    go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$ETCD_BIN/etcd.tmp" "$ETCD_BIN/etcd"
  )
}

build() {
  mkdir -p "$CACHE"
  # One build at a time per cache, even when several test runs start together.
  exec 9>"$CACHE/.build.lock"
  flock 9
  build_etcd
  build_k8s
  flock -u 9
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # process name, deadline seconds, command...
  local what="$1" deadline=$(($(date +%s) + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) > deadline)) || ! kill -0 "$(cat "$STATE/pids/$what")" 2>/dev/null; then
      log "timed out waiting for $what; logs in $STATE/logs"
      tail -n 30 "$STATE"/logs/*.log >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

make_certs() {
  local pki="$STATE/pki"
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=report-operator-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  sign_cert serving "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
  sign_cert admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

sign_cert() { # name, subject, extensions (X.509 v3, which rustls requires)
  local pki="$STATE/pki"
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$3" >"$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
}

running() {
  [[ -f "$STATE/kubeconfig" ]] || return 1
  for p in "$STATE"/pids/*; do
    [[ -f "$p" ]] && kill -0 "$(cat "$p")" 2>/dev/null || return 1
  done
  "$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig" get --raw /readyz >/dev/null 2>&1
}

start() { # name, command...
  local name="$1"
  shift
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name"
}

# kube-apiserver on the ports recorded in $STATE/ports, with the state dir's certificates.
start_apiserver() {
  local pki="$STATE/pki" etcd_port api_port
  etcd_port=$(sed -n 's/^etcd_port=//p' "$STATE/ports")
  api_port=$(sed -n 's/^api_port=//p' "$STATE/ports")
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --secure-port "$api_port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --endpoint-reconciler-type none \
    --tls-cert-file "$pki/serving.crt" --tls-private-key-file "$pki/serving.key" \
    --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
    --disable-admission-plugins ServiceAccount \
    --authorization-mode RBAC \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer "https://127.0.0.1:$api_port" \
    --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key"
}

up() {
  build
  if running; then
    log "already running: $STATE/kubeconfig"
    return
  fi
  down 2>/dev/null || true
  rm -rf "$STATE"
  mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/etcd"
  make_certs
  local etcd_port peer_port api_port
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)

  start etcd "$ETCD_BIN/etcd" --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" --unsafe-no-fsync=true --log-level warn
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$etcd_port/health"

  printf 'etcd_port=%s\napi_port=%s\n' "$etcd_port" "$api_port" >"$STATE/ports"
  start_apiserver

  local pki="$STATE/pki"
  cat >"$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: local
  context: {cluster: local, user: admin, namespace: default}
current-context: local
EOF
  wait_for kube-apiserver 120 "$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig" get --raw /readyz

  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$STATE/kubeconfig" \
    --controllers garbagecollector,namespace \
    --service-account-private-key-file "$pki/sa.key" \
    --leader-elect=false --secure-port 0
  wait_for kube-controller-manager 60 kill -0 "$(cat "$STATE/pids/kube-controller-manager")"
  log "ready: export KUBECONFIG=$STATE/kubeconfig"
}

stop() { # name: SIGTERM, then SIGKILL after 10 s
  local f="$STATE/pids/$1"
  [[ -f "$f" ]] || return 0
  local pid
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

down() {
  [[ -d "$STATE/pids" ]] || return 0
  for name in kube-controller-manager kube-apiserver etcd; do
    stop "$name"
  done
  log "stopped"
}

# The API server goes away and comes back as after a crash or an upgrade; etcd, and so every
# object, stays. Clients see refused connections meanwhile.
restart_apiserver() {
  [[ -f "$STATE/ports" && -f "$STATE/pids/etcd" ]] || {
    log "no control plane running in $STATE"
    return 1
  }
  stop kube-apiserver
  log "kube-apiserver stopped; starting it again"
  mv "$STATE/logs/kube-apiserver.log" "$STATE/logs/kube-apiserver.$(date +%s).log"
  start_apiserver
  wait_for kube-apiserver 120 "$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig" get --raw /readyz
  log "kube-apiserver ready again"
}

case "${1:-}" in
build) build ;;
up) up ;;
down) down ;;
restart-apiserver) restart_apiserver ;;
env) echo "export KUBECONFIG=$STATE/kubeconfig PATH=$K8S_BIN:\$PATH" ;;
bin-dir) echo "$K8S_BIN" ;;
*)
  echo "usage: $0 build|up|down|restart-apiserver|env|bin-dir" >&2
  exit 2
  ;;
esac
