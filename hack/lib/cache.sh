# Sourced by hack/lib/go-tool.sh and hack/lib/cargo-tool.sh: the cache of pinned tools, by
# name and version, in ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}/<name>/<version>.
#
#   cached_build NAME VERSION BUILD_FN [ARGS...]
#
# prints the path of <name>/<version>/bin/NAME, first calling `BUILD_FN DIR BIN ARGS...` to
# build it there when it is missing. One build at a time per tool, even when several runs
# start together.

CACHE="${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}"

cached_build() {
  local name=$1 version=$2 build_fn=$3
  shift 3
  local dir="$CACHE/$name/$version"
  local bin="$dir/bin/$name"
  if [[ ! -x "$bin" ]]; then
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.$name-build.lock"
    flock 9
    if [[ ! -x "$bin" ]]; then
      "$build_fn" "$dir" "$bin" "$@"
    fi
    flock -u 9
  fi
  echo "$bin"
}
