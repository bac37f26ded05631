"""Inference latency of a Keras model: minimum and median of repeated timed calls."""

import time

import numpy as np
import tensorflow as tf

from keras_distill._checks import check_int


def measure_latency(model, x, batch_size=1, repeats=9, warmup=2):
    """Times `model(batch, training=False)` on one batch of `x`, inside a `tf.function`.

    Each repeat runs the traced function once and waits for the result
    (`.numpy()`). Timings on shared CPUs jump at random, so both the minimum
    (steadiest) and the median are returned; compare models with the minimum.

    Args:
        model: A `keras.Model`.
        x: Inputs; the first `batch_size` rows are used (repeated when `x`
            has fewer rows).
        batch_size: Rows per call. Defaults to `1`.
        repeats: Number of timed calls. Defaults to `9`.
        warmup: Untimed calls first (tracing, caches). Defaults to `2`.

    Returns:
        `{"batch_size", "repeats", "min_ms", "median_ms"}`: milliseconds per call.

    Example:
        ```python
        measure_latency(student, x_test, batch_size=1)["median_ms"]
        ```
    """
    batch_size = check_int("batch_size", batch_size)
    repeats = check_int("repeats", repeats)
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError(f"`x` must hold at least one example. Received: x.shape={x.shape}")
    rows = np.resize(np.arange(len(x)), batch_size)
    batch = tf.constant(x[rows])
    call = tf.function(lambda inputs: model(inputs, training=False))
    for _ in range(max(int(warmup), 1)):
        _ = np.asarray(call(batch))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _ = np.asarray(call(batch))
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "batch_size": batch_size,
        "repeats": repeats,
        "min_ms": float(np.min(times)),
        "median_ms": float(np.median(times)),
    }
