# Sourced by hack/mdbook.sh: one way to build a Rust tool from crates.io at a pinned version
# with its own Cargo.lock (`cargo install --locked`), cached by version like the Go tools of
# hack/lib/go-tool.sh (hack/lib/cache.sh).
#
#   cargo_tool NAME CRATE VERSION
#
# builds (or reuses) CRATE@VERSION and prints the path of its binary NAME. Logs go to stderr.

source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"

cargo_tool() {
  cached_build "$1" "$3" _cargo_build "$2" "$3"
}

# _cargo_build DIR BIN CRATE VERSION
_cargo_build() {
  local dir=$1 bin=$2 crate=$3 version=$4
  printf '[%s] building %s %s from crates.io; a cold build takes a few minutes\n' "$(basename "$bin")" "$crate" "$version" >&2
  # A target directory of its own, removed afterwards: the cache keeps only the binary.
  local target
  target=$(mktemp -d)
  CARGO_TARGET_DIR="$target" cargo install --quiet --locked --version "=$version" \
    --root "$dir.tmp" "$crate" >&2
  rm -rf "$target"
  mkdir -p "$dir/bin"
  mv "$dir.tmp/bin/$(basename "$bin")" "$bin"
  rm -rf "$dir.tmp"
}
