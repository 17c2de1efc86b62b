#!/usr/bin/env bash
# The book (docs/): mdBook with Mermaid diagrams, both pinned and built from crates.io by
# hack/mdbook.sh, cached by version outside the clone.
#
#   hack/docs.sh          build the book and serve it on http://127.0.0.1:3000 (loopback only)
#   hack/docs.sh build [DIR]
#                         build it into docs/book, or DIR (open index.html there)
#   hack/docs.sh reference
#                         regenerate docs/src/reference/ from the code (the CRDs' schemas and
#                         the command line), with `report-operator docs reference`
set -euo pipefail
# A DIR given relative to where the script was started.
dest=${2:+$(realpath -m "$2")}
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "reference" ]]; then
  cargo run --quiet --locked --bin report-operator -- docs reference --out docs/src/reference
  echo "wrote docs/src/reference/"
  exit 0
fi

mdbook=$(hack/mdbook.sh)
mermaid=$(hack/mdbook.sh mermaid)
# mdbook runs the preprocessor by the name book.toml gives it, from PATH.
export PATH="$(dirname "$mermaid"):$PATH"

# Mermaid's JavaScript, as the pinned mdbook-mermaid ships it (gitignored; book.toml already
# names the files, so `install` leaves it as it is).
"$mermaid" install docs >/dev/null 2>&1

case "${1:-serve}" in
  build)
    "$mdbook" build docs ${dest:+--dest-dir "$dest"}
    ;;
  serve)
    exec "$mdbook" serve docs -n 127.0.0.1 -p "${DOCS_PORT:-3000}"
    ;;
  *)
    echo "usage: hack/docs.sh [build|serve|reference]" >&2
    exit 2
    ;;
esac
