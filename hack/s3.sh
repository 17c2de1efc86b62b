#!/usr/bin/env bash
# versitygw, an S3-compatible object storage gateway (Apache-2.0), built from the Go module
# proxy at a pinned version (hack/lib/go-tool.sh), cached by version in
# ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}. Its `posix` backend keeps buckets as
# directories, so a test needs nothing but a temporary directory and a free port.
#
#   hack/s3.sh          build (or reuse) versitygw and print the binary's path
#
# Used by hack/test.sh (exported as REPORT_OPERATOR_S3 for tests/e2e_delivery.rs) and by
# hack/demo.sh. By hand:
#   ROOT_ACCESS_KEY=admin ROOT_SECRET_KEY=adminsecret "$(hack/s3.sh)" --port 127.0.0.1:7070 posix /tmp/s3
set -euo pipefail
source "$(dirname "$0")/lib/go-tool.sh"

VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"

go_tool versitygw github.com/versity/versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw
