"""The first `fit()` of a fresh model: a Distiller against the student trained alone.

A first `fit()` traces the training step into a TensorFlow graph before it
runs it, and for small models the trace is most of the call. A variable
created during that trace (Adam's moments, a metric's totals) makes
TensorFlow trace the step a second time; the Distiller creates them before
(`keras_distill/_trace_once.py`), Keras's own `fit()` of a plain model
does not. Each repeat builds a fresh teacher and student (MLPs
of widths 16 and 8 on 10 features, 3 classes) and calls `fit()` once
(2 batches of 32, Adam, the accuracy metric): the Distiller with its
defaults (the Hinton mix with the forward KL, every-batch data checks); the
same Distiller with that state left to the trace, as before it was built
first (two traces); the student compiled alone with the sparse
cross-entropy; and the Distiller compiled with XLA (`jit_compile=True`),
whose first call also compiles the step. The four are alternated; the
table gives the minimum and the median in seconds, and the ratios of the
minima.

    python benchmarks/first_fit.py [--repeats 9]
"""

import argparse
import contextlib
import statistics
import time

import numpy as np

from keras_distill import Distiller
from keras_distill import _trace_once
from keras_distill._keras import keras

DISTILLER, ALONE = "Distiller (defaults)", "student alone (sparse cross-entropy)"
DISTILLER_TWO_TRACES = "Distiller, state created in the trace (two traces)"
DISTILLER_XLA = "Distiller, jit_compile=True"
FEATURES, CLASSES = 10, 3


def make_mlp(width, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FEATURES,))
    hidden = keras.layers.Dense(width, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(hidden))


@contextlib.contextmanager
def state_left_to_the_trace():
    """As before the Distiller made its optimizer's state and metrics ahead of the trace."""
    made_ahead = _trace_once.build_optimizer, _trace_once.build_metrics
    _trace_once.build_optimizer = _trace_once.build_metrics = lambda *args: None
    try:
        yield
    finally:
        _trace_once.build_optimizer, _trace_once.build_metrics = made_ahead


def first_fit(kind, x, y):
    """Seconds of one `fit()` of a fresh model of `kind`."""
    student = make_mlp(8, seed=2)
    optimizer = keras.optimizers.Adam(1e-3)
    if kind == ALONE:
        model = student
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    else:
        model = Distiller(student=student, teacher=make_mlp(16, seed=1))
        model.compile(optimizer=optimizer, metrics=["accuracy"], jit_compile=kind == DISTILLER_XLA)
    variant = state_left_to_the_trace() if kind == DISTILLER_TWO_TRACES else None
    with variant or contextlib.nullcontext():
        start = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, size=64)
    times = {DISTILLER: [], DISTILLER_TWO_TRACES: [], DISTILLER_XLA: [], ALONE: []}
    for kind in times:  # Warm-up: imports and one-time set-up.
        first_fit(kind, x, y)
    for _ in range(args.repeats):
        for kind in times:
            times[kind].append(first_fit(kind, x, y))
    print(f"First fit() of a fresh model, {args.repeats} alternated repeats, seconds")
    print()
    print("| run | min | median |")
    print("|---|---|---|")
    for kind, values in times.items():
        print(f"| {kind} | {min(values):.2f} | {statistics.median(values):.2f} |")
    print()
    best = {kind: min(values) for kind, values in times.items()}
    for kind in (DISTILLER, DISTILLER_XLA):
        print(f"ratio of minima, {kind} / alone: {best[kind] / best[ALONE]:.2f}")
    print(f"ratio of minima, two traces / one: {best[DISTILLER_TWO_TRACES] / best[DISTILLER]:.2f}")


if __name__ == "__main__":
    main()
