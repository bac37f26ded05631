#!/usr/bin/env bash
# Sets everything up, lints, then runs the test suite once per Keras generation.
# Extra arguments go to pytest (e.g. `-m slow`). pytest's exit code 5 (no tests) fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
echo "== ruff (pyproject.toml: line length 100) =="
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== Keras 3 =="
TF_USE_LEGACY_KERAS=0 .venv/bin/python -m pytest "$@"
echo "== tf_keras (TF_USE_LEGACY_KERAS=1) =="
TF_USE_LEGACY_KERAS=1 .venv/bin/python -m pytest "$@"
