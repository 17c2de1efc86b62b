# Sourced by hack/mdbook.sh: one way to build a Rust tool from crates.io at a pinned version
# with its own Cargo.lock (`cargo install --locked`), cached by version in
# ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}/<name>/<version>/bin, like the Go
# tools of hack/lib/go-tool.sh.
#
#   cargo_tool NAME CRATE VERSION
#
# builds (or reuses) CRATE@VERSION and prints the path of its binary NAME. Logs go to stderr.

CACHE="${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}"

cargo_tool() {
  local name=$1 crate=$2 version=$3
  local dir="$CACHE/$name/$version"
  local bin="$dir/bin/$name"
  if [[ ! -x "$bin" ]]; then
    mkdir -p "$CACHE"
    # One build at a time per cache, even when several runs start together.
    exec 9>"$CACHE/.$name-build.lock"
    flock 9
    if [[ ! -x "$bin" ]]; then
      printf '[%s] building %s %s from crates.io; a cold build takes a few minutes\n' "$name" "$crate" "$version" >&2
      # A target directory of its own, removed afterwards: the cache keeps only the binary.
      local target
      target=$(mktemp -d)
      CARGO_TARGET_DIR="$target" cargo install --quiet --locked --version "=$version" \
        --root "$dir.tmp" "$crate" >&2
      rm -rf "$target"
      mkdir -p "$dir/bin"
      mv "$dir.tmp/bin/$name" "$bin"
      rm -rf "$dir.tmp"
    fi
    flock -u 9
  fi
  echo "$bin"
}
