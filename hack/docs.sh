#!/usr/bin/env bash
# The book (docs/): mdBook with Mermaid diagrams, both pinned and built from crates.io by
# hack/mdbook.sh, cached by version outside the clone.
#
#   hack/docs.sh          build the book and serve it on http://127.0.0.1:3000 (loopback only)
#   hack/docs.sh build    build it into docs/book (open docs/book/index.html)
#   hack/docs.sh reference
#                         regenerate docs/src/reference/ from the code (the CRDs' schemas and
#                         the command line), with `report-operator docs reference`
set -euo pipefail
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
    "$mdbook" build docs
    ;;
  serve)
    "$mdbook" build docs
    exec "$mdbook" serve docs -n 127.0.0.1 -p "${DOCS_PORT:-3000}"
    ;;
  *)
    echo "usage: hack/docs.sh [build|serve|reference]" >&2
    exit 2
    ;;
esac
