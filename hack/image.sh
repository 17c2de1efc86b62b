#!/usr/bin/env bash
# The operator's image as an OCI archive (a tarball of an OCI image layout), without a Docker
# engine: the binary, the C libraries it links and a few files from the build host in one
# layer on an empty base, assembled by go-containerregistry's crane (built from the Go module
# proxy, cached by version like hack/helm.sh) against a registry crane serves on loopback
# while the script runs. The Dockerfile describes the same image.
#
#   hack/image.sh [--binary PATH] [--output FILE]
#       default binary: target/release/report-operator, built here (cargo build --release)
#       default output: target/image/report-operator-<version>.oci.tar
#   hack/image.sh crane      build (or reuse) crane and print its path
#
# tests/image.rs runs it with the debug binary and checks the archive.
set -euo pipefail
cd "$(dirname "$0")/.."

CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
CACHE="${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}"
CRANE_DIR="$CACHE/crane/$CRANE_VERSION"
CRANE="$CRANE_DIR/bin/crane"

# What the image says about itself (also in the Dockerfile's LABELs).
SOURCE=https://github.com/report-operator/report-operator
LICENSES=Apache-2.0
UID_GID=65532

log() { printf '[image] %s\n' "$*" >&2; }

# The Go toolchain must not try to fetch another toolchain: this machine only reaches the
# module proxy.
export GOTOOLCHAIN=local

build_crane() {
  [[ -x "$CRANE" ]] && return
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.crane-build.lock"
  flock 9
  if [[ ! -x "$CRANE" ]]; then
    log "building crane $CRANE_VERSION from the Go module proxy"
    mkdir -p "$CRANE_DIR"
    # go-containerregistry's go.mod has no replace directives, so `go install …@version`
    # builds exactly the released module graph.
    GOBIN="$CRANE_DIR/bin.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
      "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
    mkdir -p "$CRANE_DIR/bin"
    mv "$CRANE_DIR/bin.tmp/crane" "$CRANE"
    rmdir "$CRANE_DIR/bin.tmp"
  fi
  flock -u 9
}

if [[ "${1:-}" == crane ]]; then
  build_crane
  echo "$CRANE"
  exit 0
fi

binary=""
output=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    *) echo "usage: hack/image.sh [--binary PATH] [--output FILE] | hack/image.sh crane" >&2; exit 2 ;;
  esac
done

version=$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)
if [[ -z "$binary" ]]; then
  log "building the release binary"
  cargo build --release --locked --bin report-operator
  binary=target/release/report-operator
fi
output="${output:-target/image/report-operator-$version.oci.tar}"
mkdir -p "$(dirname "$output")"
build_crane

work=$(mktemp -d)
registry_pid=""
cleanup() {
  [[ -n "$registry_pid" ]] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The root file system of the single layer.
root="$work/rootfs"
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
install -m 0755 "$binary" "$root/report-operator"
# The shared libraries the binary links, at the paths the dynamic loader looks for them.
ldd "$binary" | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
  "$UID_GID" "$UID_GID" >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$UID_GID" >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
# Reproducible: sorted, owned by root, one time stamp; ustar fails on names it cannot hold
# instead of writing extensions.
(cd "$root" && tar --format=ustar --sort=name --owner=0 --group=0 --numeric-owner \
  --mtime=@0 -cf "$work/layer.tar" -- *)

# crane mutates images in a registry only: one of its own, in memory, on a loopback port.
"$CRANE" registry serve --address 127.0.0.1:0 >"$work/registry.log" 2>&1 &
registry_pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log" | head -1)
  [[ -n "$port" ]] && break
  kill -0 "$registry_pid" 2>/dev/null || { cat "$work/registry.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$port" ]] || { log "crane's registry did not start"; cat "$work/registry.log" >&2; exit 1; }
repo="127.0.0.1:$port/report-operator"

"$CRANE" append --oci-empty-base -f "$work/layer.tar" -t "$repo:layer" >/dev/null
"$CRANE" mutate "$repo:layer" -t "$repo:$version" \
  --set-platform linux/amd64 \
  --user "$UID_GID:$UID_GID" \
  --entrypoint /report-operator --cmd run \
  --exposed-ports 8080/tcp \
  -l "org.opencontainers.image.source=$SOURCE" \
  -l "org.opencontainers.image.version=$version" \
  -l "org.opencontainers.image.licenses=$LICENSES" \
  -l "org.opencontainers.image.title=report-operator" >/dev/null
"$CRANE" pull --format oci "$repo:$version" "$work/layout"
# crane writes some blobs 0600: the archive's files are for everyone to read.
chmod -R u+rwX,go+rX,go-w "$work/layout"
(cd "$work/layout" && tar --format=ustar --sort=name --owner=0 --group=0 --numeric-owner \
  --mtime=@0 -cf "$work/image.tar" -- *)
mv "$work/image.tar" "$output"
log "wrote $output"
echo "$output"
