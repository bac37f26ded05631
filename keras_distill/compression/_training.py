"""Shared fit loop of the compression stages: with a teacher (the Distiller) or alone."""

import math

import numpy as np
import tensorflow as tf

from keras_distill import _trace_once
from keras_distill._keras import keras


def steps_per_epoch(x, batch_size):
    """Batches per epoch of `x`: NumPy arrays or a finite, batched `tf.data.Dataset`."""
    if isinstance(x, tf.data.Dataset):
        steps = int(x.cardinality())
        if steps < 1:
            raise ValueError(
                "`x` must be a finite tf.data.Dataset of known length (the pruning schedule "
                "is laid out over the training steps); call `.repeat(n).take(k)` or pass "
                f"arrays. Received: x with cardinality {steps}"
            )
        return steps
    return math.ceil(len(np.asarray(x)) / batch_size)


def fit(model, x, y, teacher, options):
    """Trains `model` with the Distiller when `teacher` is given, else with cross-entropy.

    Args:
        model: The student (pruned or quantization-aware), trained in place.
        x: Inputs (arrays or a dataset of `(x, y)`); `y`: labels or `None`.
        teacher: A `keras.Model` (or `TeacherCache`), or `None` for labels only.
        options: A `TrainingOptions` (epochs, batch size, optimizer, alpha,
            temperature, callbacks, validation data, verbosity).
    """
    fit_arguments = options.fit_arguments(batched=isinstance(x, tf.data.Dataset))
    if teacher is None:
        model.compile(
            optimizer=options.new_optimizer(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        _trace_once.prepare_fit(model, x, y)
        return model.fit(x, y, **fit_arguments)
    from keras_distill.distiller import Distiller

    distiller = Distiller(student=model, teacher=teacher)
    distiller.compile(
        optimizer=options.new_optimizer(),
        metrics=["accuracy"],
        alpha=options.alpha,
        temperature=options.temperature,
    )
    return distiller.fit(x, y, **fit_arguments)
