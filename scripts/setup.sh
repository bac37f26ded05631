#!/usr/bin/env bash
# Creates .venv (if missing) and installs keras_distill with every extra, pinned by constraints.txt.
# The install runs with uv (itself installed into .venv by pip), which fetches and unpacks the
# packages in parallel and compiles their bytecode ahead (each test process then imports
# TensorFlow from .pyc files). Where uv cannot be installed or cannot install, pip does it.
# pip runs quietly. Two known notices are silenced, nothing else: setuptools' "Editable
# installation" build warning (a PYTHONWARNINGS filter on that message only, for the editable
# install), and pip's line about a configured package location missing on this machine.
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
if quiet_pip install --quiet -c constraints.txt uv &&
    .venv/bin/uv pip install --quiet --python .venv/bin/python --compile-bytecode \
        -c constraints.txt -e ".[dev]"; then
    :
else
    echo "uv could not install the packages; installing with pip"
    quiet_pip install --quiet --upgrade pip
    PYTHONWARNINGS="ignore:Editable installation" \
        quiet_pip install --quiet -c constraints.txt -e ".[dev]"
fi
