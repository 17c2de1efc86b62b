#!/usr/bin/env bash
# mdBook and the mdbook-mermaid preprocessor (diagrams), built from crates.io at pinned
# versions (hack/lib/cargo-tool.sh), cached by version in
# ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}.
#
#   hack/mdbook.sh           build (or reuse) both and print mdbook's path
#   hack/mdbook.sh mermaid   the same, and print mdbook-mermaid's path
#
# mdbook-mermaid 0.17.1 is built against mdbook 0.5.0 and warns when another mdbook calls
# it, so the two versions move together. Mermaid's JavaScript ships inside mdbook-mermaid:
# the book renders its diagrams without any network.
set -euo pipefail
source "$(dirname "$0")/lib/cargo-tool.sh"

MDBOOK_VERSION=0.5.0
MDBOOK_MERMAID_VERSION=0.17.1

mdbook=$(cargo_tool mdbook mdbook "$MDBOOK_VERSION")
mermaid=$(cargo_tool mdbook-mermaid mdbook-mermaid "$MDBOOK_MERMAID_VERSION")
case "${1:-}" in
  mermaid) echo "$mermaid" ;;
  "") echo "$mdbook" ;;
  *) echo "usage: hack/mdbook.sh [mermaid]" >&2; exit 2 ;;
esac
