#!/usr/bin/env bash
# Sets everything up, then runs the end-to-end distillation demo on generated MNIST-1D:
# keras_distill.distill() trains the student alone, distils copies of it on a teacher-labelled
# transfer set, and keeps whichever is better on validation. Results go to outputs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# TensorFlow 2.21 writes a few native start-up lines (oneDNN notice, no CUDA driver) before its
# logging honours TF_CPP_MIN_LOG_LEVEL; only those known lines are dropped from stderr.
ABSL='WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR'
NATIVE='[IWE][0-9]{4} [0-9:. ]+ +[0-9]+ (port|cudart_stub|cuda_platform|cpu_feature_guard)\.cc:[0-9]+\] '
STARTUP_NOISE="^($ABSL|$NATIVE)"
.venv/bin/python examples/mnist1d_distill.py "$@" 2> >(grep -v -E "$STARTUP_NOISE" >&2)
