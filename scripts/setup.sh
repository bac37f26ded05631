#!/usr/bin/env bash
# Creates .venv (if missing) and installs keras_distill with every extra, pinned by constraints.txt.
# pip runs quietly; the only line dropped from its stderr is pip's notice about a configured
# package location that does not exist on this machine (known noise, not an error).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1 PIP_ROOT_USER_ACTION=ignore
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
MISSING_LOCATION="^WARNING: Location '[^']*' is ignored: it is neither a file nor a directory\.$"
quiet_pip() {
    .venv/bin/python -m pip "$@" 2> >(grep -v -E "$MISSING_LOCATION" >&2)
}
quiet_pip install --quiet --upgrade pip
quiet_pip install --quiet -c constraints.txt -e ".[dev]"
