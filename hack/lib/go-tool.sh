# Sourced by hack/helm.sh, hack/promtool.sh and hack/image.sh: one way to build a Go tool from
# the Go module proxy at a pinned version (no prebuilt binaries are downloaded), cached by
# version in ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}/<name>/<version>/bin.
#
#   go_tool NAME MODULE VERSION PACKAGE [LDFLAGS_FN] [TAGS]
#
# builds (or reuses) PACKAGE of MODULE@VERSION as NAME and prints the binary's path.
# LDFLAGS_FN, if given, is a function called with the path of the tool's go.mod that prints
# extra -ldflags (a version to stamp in, say). Logs go to stderr.

source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"

# The Go toolchain must not try to fetch another toolchain: this machine only reaches the
# module proxy.
export GOTOOLCHAIN=local

go_tool() {
  cached_build "$1" "$3" _go_build "$@"
}

# _go_build DIR BIN NAME MODULE VERSION PACKAGE [LDFLAGS_FN] [TAGS]
_go_build() {
  local dir=$1 bin=$2 name=$3 module=$4 version=$5 package=$6 ldflags_fn=${7:-} tags=${8:-}
  printf '[%s] building %s %s from the Go module proxy; a cold build takes a few minutes\n' "$name" "$name" "$version" >&2
  local mod="$dir/module"
  mkdir -p "$mod" "$dir/bin"
  (
    cd "$mod"
    # A wrapper module rather than `go install …@version`: it builds the same way
    # whether or not the tool's go.mod carries replace directives (those only count in
    # the main module), and keeps the resolved go.sum next to the binary.
    curl -fsS "https://proxy.golang.org/$module/@v/$version.mod" -o tool.mod
    {
      echo "module report-operator.io/$name-build"
      echo
      echo "go $(awk '/^go /{print $2; exit}' tool.mod)"
      echo
      echo "require $module $version"
      # Carry over the tool's own replace directives that point at other modules.
      if grep -q '^replace' tool.mod; then
        echo
        awk '/^replace \(/{inside=1; next} inside && /^\)/{inside=0; next}
             inside && $0 !~ /=> *\./ {print "replace " $0}
             /^replace [^(]/ && $0 !~ /=> *\./ {print}' tool.mod
      fi
    } >go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$package" >tools.go
    GOFLAGS="${GOFLAGS:-} -mod=mod" go mod tidy -e >/dev/null 2>&1 || true
    local ldflags="-s -w"
    if [[ -n "$ldflags_fn" ]]; then
      ldflags+=" $("$ldflags_fn" "$mod/tool.mod")"
    fi
    GOFLAGS="${GOFLAGS:-} -mod=mod" CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "$ldflags" \
      -o "$bin.tmp" "$package"
    mv "$bin.tmp" "$bin"
  )
}
