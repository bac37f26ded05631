"""Argument checks shared by the distiller: clear errors before TensorFlow's."""

import math
import numbers

import numpy as np
import tensorflow as tf

from keras_distill._keras import GENERATION
from keras_distill._keras import keras

TEACHER_OUTPUT_KINDS = ("logits", "probabilities")


def check_alpha(alpha):
    """Returns `alpha` as a float, or raises unless it lies in `[0, 1]`."""
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, numbers.Real)
        or math.isnan(alpha)
        or not 0.0 <= alpha <= 1.0
    ):
        raise ValueError(f"`alpha` must be a number in [0, 1]. Received: alpha={alpha!r}")
    return float(alpha)


def check_temperature(temperature):
    """Returns `temperature` as a float, or raises unless it is finite and > 0."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(
            f"`temperature` must be a finite number > 0. Received: temperature={temperature!r}"
        )
    return float(temperature)


def check_choice(name, value, choices):
    """Raises unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}"
        )
    return value


def check_model(name, model):
    """Raises unless `model` is a built `keras.Model` of the active generation."""
    if not isinstance(model, keras.Model):
        generation_hint = ""
        module = type(model).__module__ or ""
        if module.startswith(("keras", "tf_keras")):
            generation_hint = (
                f" keras_distill is running on {GENERATION}; build the model with the "
                "same Keras (set TF_USE_LEGACY_KERAS=1 before importing for tf_keras)."
            )
        raise ValueError(
            f"`{name}` must be a keras.Model.{generation_hint} "
            f"Received: {name}={type(model).__module__}.{type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"`{name}` is not built, so its input and output shapes are unknown. "
            f"Build it first, e.g. with a `keras.Input` layer, `{name}.build(input_shape)` "
            f"or by calling it on a batch. Received: {name}={model.name!r} (unbuilt)"
        )


def check_distinct(student, teacher):
    """Raises when the same model object is passed as student and teacher."""
    if student is teacher:
        raise ValueError(
            "`student` and `teacher` must be different models: the teacher is frozen "
            f"while the student trains. Received: the same object {student.name!r} as both"
        )


def check_class_counts(student_shape, teacher_shape):
    """Raises unless the distilled outputs end in the same number of classes."""
    if student_shape is None or teacher_shape is None:
        return
    student_classes, teacher_classes = student_shape[-1], teacher_shape[-1]
    if student_classes is None or teacher_classes is None:
        return
    if student_classes != teacher_classes:
        raise ValueError(
            "The student's and the teacher's distilled outputs must have the same number "
            f"of classes to be compared ({student_classes} vs {teacher_classes}). "
            f"Received: student output shape={tuple(student_shape)}, "
            f"teacher output shape={tuple(teacher_shape)}"
        )


def looks_like_probabilities(outputs, atol=1e-3):
    """True when every row is in `[0, 1]` and sums to 1: softmax output, not logits."""
    values = np.asarray(outputs, dtype=np.float64)
    if values.ndim == 0 or values.shape[-1] < 2 or values.size == 0:
        return False
    in_range = np.all(values >= 0.0) and np.all(values <= 1.0)
    return bool(in_range and np.allclose(values.sum(axis=-1), 1.0, atol=atol))


def check_finite(name, values):
    """Raises when a float array (or nest of them) holds NaN or Inf."""
    for leaf in _leaves(values):
        array = np.asarray(leaf)
        if array.dtype.kind not in "fc" or np.all(np.isfinite(array)):
            continue
        bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=-1)
        first = int(np.argmax(bad))
        raise ValueError(
            f"`{name}` contains NaN or Inf values ({int(bad.sum())} of {len(array)} examples, "
            f"the first at index {first}). Received: {name}[{first}] with "
            f"{np.asarray(array[first]).ravel()[:6].tolist()}..."
        )


def check_data_arrays(x, y):
    """Raises unless every array in `x` and `y` has the same number of examples."""
    lengths = {len(leaf) for leaf in _leaves(x)}
    label_lengths = {len(leaf) for leaf in _leaves(y)} if y is not None else set()
    if len(lengths | label_lengths) > 1:
        raise ValueError(
            "`x` and `y` must hold the same number of examples. "
            f"Received: x with {sorted(lengths)} and y with {sorted(label_lengths)} examples"
        )
    check_finite("x", x)


def check_labels(labels, num_classes, mask_value):
    """Raises when labels do not fit `num_classes` (sparse range or one-hot width)."""
    if labels.ndim >= 2 and labels.shape[-1] != 1:
        if labels.shape[-1] != num_classes:
            raise ValueError(
                f"One-hot labels need {num_classes} columns, one per class of the models. "
                f"Received: y with shape {labels.shape}"
            )
        return
    present = labels[labels != mask_value]
    if present.size == 0:
        return
    low, high = present.min(), present.max()
    if low < 0 or high >= num_classes or np.any(present != np.round(present)):
        raise ValueError(
            f"Sparse labels must be class indices in [0, {num_classes - 1}] (or {mask_value} for "
            f"a missing label). Received: y with values from {low} to {high}"
        )


def _leaves(values):
    return [] if values is None else tf.nest.flatten(values)


def check_positive_int(name, value, minimum=1):
    """Returns `value` as an int, or raises unless it is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_positive_number(name, value):
    """Returns `value` as a float, or raises unless it is a finite number > 0."""
    return _check_real(name, value, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def check_fraction(name, value):
    """Returns `value` as a float, or raises unless it lies strictly between 0 and 1."""
    return _check_real(name, value, lambda v: 0.0 < v < 1.0, "a number in (0, 1)")


def _check_real(name, value, accept, expected):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not accept(value):
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return float(value)
