#!/usr/bin/env bash
# Sets everything up, lints, then runs the test suite once per Keras generation.
# The two generations run side by side (one process each, so both cores work), each writing its
# own log, printed when both have finished. Extra arguments go to pytest (e.g. `-m slow`).
# The run fails when either generation fails, including pytest's exit code 5 (no tests).
# scripts/run_pytest.py is `python -m pytest` without the slow interpreter teardown at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
echo "== ruff (pyproject.toml: line length 100) =="
.venv/bin/ruff check .
.venv/bin/ruff format --check .

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
run_generation() {  # name, TF_USE_LEGACY_KERAS value, pytest arguments...
    local name="$1" legacy="$2"
    shift 2
    local status=0 began=$SECONDS
    TF_USE_LEGACY_KERAS="$legacy" .venv/bin/python scripts/run_pytest.py "$@" >"$logs/$name.log" 2>&1 ||
        status=$?
    echo "$status" >"$logs/$name.status"
    echo "$((SECONDS - began))" >"$logs/$name.seconds"
}
echo "== pytest: Keras 3 and tf_keras (TF_USE_LEGACY_KERAS=1), side by side =="
start=$SECONDS
run_generation keras3 0 "$@" &
run_generation tf_keras 1 "$@" &
wait
failed=0
for name in keras3 tf_keras; do
    status="$(cat "$logs/$name.status")"
    echo "== $name (exit code $status, $(cat "$logs/$name.seconds") s) =="
    cat "$logs/$name.log"
    [ "$status" = 0 ] || failed=1
done
echo "== both generations in $((SECONDS - start)) s =="
exit "$failed"
