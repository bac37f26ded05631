"""Inference latency of Keras models: minimum and median of repeated, warmed-up timed calls."""

import time

import numpy as np
import tensorflow as tf

from keras_distill._checks import check_int

DEFAULT_WARMUP = 10


def measure_latency(model, x, batch_size=1, repeats=9, warmup=DEFAULT_WARMUP):
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
        warmup: Untimed calls first (tracing, caches, thread pools).
            Defaults to `10`.

    Returns:
        `{"batch_size", "repeats", "min_ms", "median_ms"}`: milliseconds per call.

    Example:
        ```python
        measure_latency(student, x_test, batch_size=1)["median_ms"]
        ```
    """
    return measure_latencies({"model": model}, x, batch_size, repeats, warmup)["model"]


def measure_latencies(models, x, batch_size=1, repeats=9, warmup=DEFAULT_WARMUP):
    """Times several models on the same batch, alternating them call by call.

    Every model's call is traced once (one `tf.function` per model, reused
    for the warm-up and the timed calls, so nothing retraces) and warmed up
    with `warmup` untimed calls. Then each of `repeats` rounds times every
    model once, in turn (each round starting one model later), so a slow
    spell of the machine, or the caches another model left behind, fall on
    all models alike, and two identical models time alike.

    Args:
        models: `{name: keras.Model}`.
        x: Inputs; the first `batch_size` rows are used (repeated when `x`
            has fewer rows).
        batch_size: Rows per call. Defaults to `1`.
        repeats: Timed calls per model. Defaults to `9`.
        warmup: Untimed calls per model first. Defaults to `10`.

    Returns:
        `{name: {"batch_size", "repeats", "min_ms", "median_ms"}}`.
    """
    batch_size = check_int("batch_size", batch_size)
    repeats = check_int("repeats", repeats)
    warmup = check_int("warmup", warmup, minimum=0)
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError(f"`x` must hold at least one example. Received: x.shape={x.shape}")
    rows = np.resize(np.arange(len(x)), batch_size)
    batch = tf.constant(x[rows])
    calls = {name: _traced_call(model) for name, model in models.items()}
    for call in calls.values():
        for _ in range(max(warmup, 1)):
            _ = np.asarray(call(batch))
    times = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(repeats):
        # Each round starts one model later, so every model follows every other equally often.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call = calls[name]
            start = time.perf_counter()
            _ = np.asarray(call(batch))
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {
        name: {
            "batch_size": batch_size,
            "repeats": repeats,
            "min_ms": float(np.min(values)),
            "median_ms": float(np.median(values)),
        }
        for name, values in times.items()
    }


def _traced_call(model):
    @tf.function(reduce_retracing=True)
    def call(inputs):
        return model(inputs, training=False)

    return call
