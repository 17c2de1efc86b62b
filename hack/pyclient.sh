#!/usr/bin/env bash
# A Python virtual environment with CloudBlue's own Connect client (`connect-openapi-client`
# from PyPI) and pytest, at the versions pinned in sim/tests/connect_client/requirements.txt,
# cached by client version in
# ${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}/venv/connect-openapi-client-<version>.
#
#   hack/pyclient.sh    create (or reuse) the environment and print its path
#
# Used by hack/test.sh (exported as REPORT_OPERATOR_PYCLIENT for sim/tests/sim_connect_client.rs,
# which runs sim/tests/connect_client/ with it against report-sim). By hand:
#   "$(hack/pyclient.sh)/bin/python" -m pytest sim/tests/connect_client  # with REPORT_SIM_CONNECT_URL set
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=sim/tests/connect_client/requirements.txt
CACHE="${REPORT_OPERATOR_CACHE:-$HOME/.cache/report-operator}"
PYTHON="${PYTHON:-python3}"

version=$(sed -n 's/^connect-openapi-client==//p' "$REQUIREMENTS")
if [[ -z "$version" ]]; then
  echo "hack/pyclient.sh: $REQUIREMENTS pins no connect-openapi-client version" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "hack/pyclient.sh: connect-openapi-client $version needs Python 3.10 or later ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
venv="$CACHE/venv/connect-openapi-client-$version"
# The environment is reused only if it was completed from these very pins by this Python.
stamp="$( (cat "$REQUIREMENTS"; "$PYTHON" --version) | sha256sum | cut -d' ' -f1)"

if [[ "$(cat "$venv/.complete" 2>/dev/null)" != "$stamp" ]]; then
  mkdir -p "$CACHE/venv"
  # One build at a time per cache, even when several test runs start together.
  exec 9>"$CACHE/venv/.connect-openapi-client.lock"
  flock 9
  if [[ "$(cat "$venv/.complete" 2>/dev/null)" != "$stamp" ]]; then
    printf '[pyclient] installing connect-openapi-client %s and pytest from PyPI into %s\n' "$version" "$venv" >&2
    # A virtual environment cannot be moved once made (its scripts name their own path), so
    # it is made in place; the stamp, written last, marks it complete.
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      --requirement "$REQUIREMENTS" >&2
    "$venv/bin/python" -m pip check --disable-pip-version-check >&2
    echo "$stamp" >"$venv/.complete"
  fi
  flock -u 9
fi
echo "$venv"
