#!/usr/bin/env bash
# Sets everything up, then runs the end-to-end distillation demo on generated MNIST-1D.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
.venv/bin/python examples/mnist1d_distill.py "$@"
