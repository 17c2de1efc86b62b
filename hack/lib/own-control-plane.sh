# Sourced by hack/bench.sh and hack/soak.sh: a control plane of the script's own, with the
# CRDs installed, stopped when the script exits; a shared or test control plane is never
# touched.
#
#   own_control_plane NAME [STATE_DIR]
#
# keeps its state in STATE_DIR, or in a temporary directory (report-operator-NAME.XXXXXX)
# removed on exit; exports CP_STATE_DIR, KUBECONFIG and the PATH with its kubectl.

own_control_plane() {
  OWN_CP_TEMP=""
  if [[ -n "${2:-}" ]]; then
    export CP_STATE_DIR="$2"
  else
    CP_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/report-operator-$1.XXXXXX")"
    export CP_STATE_DIR
    OWN_CP_TEMP=1
  fi
  trap 'hack/control-plane.sh down || true; if [[ -n "$OWN_CP_TEMP" ]]; then rm -rf "$CP_STATE_DIR"; fi' EXIT
  hack/control-plane.sh up
  eval "$(hack/control-plane.sh env)"
  kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
  kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null
}
