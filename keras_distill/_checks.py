"""Argument checks shared by every module: clear errors before TensorFlow's.

Each kind of check lives here once. Messages name the argument, say what was
expected and end with `Received: name=value`.
"""

import math
import numbers
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_distill._keras import GENERATION
from keras_distill._keras import compiled_metric_objects
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


def check_bool(name, value):
    """Returns `value`, or raises unless it is `True` or `False`."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_trainable(name, model):
    """Raises when `model` has no trainable weight (frozen): training could not change it."""
    if not model.trainable or not model.trainable_weights:
        raise ValueError(
            f"`{name}` has no trainable weights, so training cannot change it. Unfreeze it "
            f"(`{name}.trainable = True`) before `fit`. "
            f"Received: {name}={model.name!r} with trainable={model.trainable}"
        )


def check_choice(name, value, choices):
    """Raises unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")
    return value


def check_int(name, value, minimum=1):
    """Returns `value` as an int, or raises unless it is an integer >= `minimum`.

    NumPy integers pass; booleans and floats (even `2.0`) do not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_number(
    name, value, minimum=None, integer=False, maximum=None, open_minimum=False, open_maximum=False
):
    """Returns `value`, or raises unless it is a finite number (an integer) within bounds.

    Args:
        name: The argument's name, for the message.
        value: The value to check. Booleans are refused.
        minimum: The smallest value allowed, or `None`.
        integer: Whether only integers pass (floats such as `2.0` do not).
        maximum: The largest value allowed, or `None`.
        open_minimum: Whether `minimum` itself is refused (`value > minimum`).
        open_maximum: Whether `maximum` itself is refused (`value < maximum`).
    """
    kind = numbers.Integral if integer else numbers.Real
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not math.isfinite(value)
        or (minimum is not None and (value < minimum or (open_minimum and value == minimum)))
        or (maximum is not None and (value > maximum or (open_maximum and value == maximum)))
    ):
        what = "an integer" if integer else "a number"
        if minimum is not None and maximum is not None:
            bound = (
                f" in {'(' if open_minimum else '['}{minimum}, {maximum}"
                f"{')' if open_maximum else ']'}"
            )
        elif minimum is not None:
            bound = f" {'>' if open_minimum else '>='} {minimum}"
        elif maximum is not None:
            bound = f" {'<' if open_maximum else '<='} {maximum}"
        else:
            bound = ""
        raise ValueError(f"`{name}` must be {what}{bound}. Received: {name}={value!r}")
    return value


def check_path(name, path, suffixes, expected=None):
    """Returns `path` as a `str`, or raises unless it ends in one of `suffixes`.

    The comparison ignores case. `expected` overrides the default wording
    ("a file path ending in ...").
    """
    suffixes = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
    expected = expected or "a file path ending in " + " or ".join(repr(s) for s in suffixes)
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={path!r}") from None
    if not isinstance(path, str) or not path.lower().endswith(suffixes):
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={path!r}")
    return path


def check_existing_file(name, path, expected):
    """Raises unless `path` is an existing file (a folder or nothing is reported as such)."""
    if not os.path.isfile(path):
        reason = "it is a folder" if os.path.isdir(path) else "no such file"
        raise ValueError(f"`{name}` must be {expected}; {reason}. Received: {name}={path!r}")


def check_output_file(name, path, inputs=None):
    """Raises unless a file can be written at `path`, before any long work starts.

    `path` must not be a folder, must not lie inside an existing file, its
    nearest existing folder must be writable, and it must not be one of the
    `inputs` (`{option: path}`), which writing would replace.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"`{name}` must be a file path; it is a folder. Received: {name}={path!r}")
    for option, source in (inputs or {}).items():
        if source is not None and _same_file(path, source):
            raise ValueError(
                f"`{name}` must differ from `{option}`: writing it would replace that input. "
                f"Choose another file. Received: {name}={path!r}, {option}={source!r}"
            )
    _check_parent_folder(name, os.path.dirname(os.path.abspath(path)), path)


def check_output_folder(name, path):
    """Raises unless `path` is (or can be created as) a writable folder."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"`{name}` must be a folder; a file exists there. Remove it or choose another "
            f"folder. Received: {name}={path!r}"
        )
    _check_parent_folder(name, os.path.abspath(path), path)


def _check_parent_folder(name, folder, path):
    """Raises when the nearest existing ancestor of `folder` is a file or not writable."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(
            f"`{name}` lies inside {existing!r}, which is a file, not a folder. "
            f"Choose another location. Received: {name}={path!r}"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"`{name}` cannot be written: the folder {existing!r} is not writable. "
            f"Choose another location. Received: {name}={path!r}"
        )


def _same_file(first, second):
    if os.path.exists(first) and os.path.exists(second):
        return os.path.samefile(first, second)
    return os.path.abspath(first) == os.path.abspath(second)


def first_line(error):
    """The first line of an exception's message, or its type name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_keras_model(name, model):
    """Raises unless `model` is a `keras.Model` of the active generation (built or not)."""
    if not isinstance(model, keras.Model):
        generation_hint = ""
        module = type(model).__module__ or ""
        if module.startswith(("keras", "tf_keras")):
            generation_hint = (
                f" keras_distill is running on {GENERATION}; build the model with the "
                "same Keras (set TF_USE_LEGACY_KERAS=1 before importing for tf_keras)."
            )
        raise ValueError(
            f"`{name}` must be a keras.Model of the active Keras ({GENERATION}).{generation_hint} "
            f"Received: {name}={type(model).__module__}.{type(model).__name__}"
        )
    return model


def check_model(name, model):
    """Raises unless `model` is a built `keras.Model` of the active generation."""
    check_keras_model(name, model)
    if not model.built:
        raise ValueError(
            f"`{name}` is not built, so its input and output shapes are unknown. "
            f"Build it first, e.g. with a `keras.Input` layer, `{name}.build(input_shape)` "
            f"or by calling it on a batch. Received: {name}={model.name!r} (unbuilt)"
        )


def check_teacher_from_logits(teacher_from_logits, teacher_outputs):
    """`teacher_from_logits`, or its value from the deprecated `teacher_outputs`."""
    if teacher_outputs is None:
        if not isinstance(teacher_from_logits, bool):
            raise ValueError(
                "`teacher_from_logits` must be True (the teacher returns logits) or False "
                f"(probabilities). Received: teacher_from_logits={teacher_from_logits!r}"
            )
        return teacher_from_logits
    warnings.warn(
        "`teacher_outputs` is deprecated and will be removed in the next release; use "
        "`teacher_from_logits=True` (logits) or `teacher_from_logits=False` (probabilities).",
        DeprecationWarning,
        stacklevel=3,
    )
    check_choice("teacher_outputs", teacher_outputs, TEACHER_OUTPUT_KINDS)
    return teacher_outputs == "logits"


def check_distinct(student, teacher):
    """Raises when the same model object is passed as student and teacher."""
    if student is teacher:
        raise ValueError(
            "`student` and `teacher` must be different models: the teacher is frozen "
            f"while the student trains. Received: the same object {student.name!r} as both"
        )


_VOCABULARY_SIZE = 256
"""From this many classes on, a class-count mismatch may be a padded vocabulary."""


def check_class_counts(student_shape, teacher_shape, shared_classes=None):
    """Raises unless the distilled outputs have the same positions and number of classes.

    Args:
        student_shape: Static shape of the student's logits (`None` dims unknown).
        teacher_shape: Same, for the teacher.
        shared_classes: When set, both need at least this many classes (only
            these are compared).
    """
    if student_shape is None or teacher_shape is None:
        return
    student_classes, teacher_classes = student_shape[-1], teacher_shape[-1]
    received = (
        f"Received: student output shape={tuple(student_shape)}, "
        f"teacher output shape={tuple(teacher_shape)}"
    )
    if len(student_shape) != len(teacher_shape) or any(
        s is not None and t is not None and s != t
        for s, t in zip(student_shape[1:-1], teacher_shape[1:-1])
    ):
        raise ValueError(
            "The student's and the teacher's logits must have the same positions (sequence "
            "length, image size) to be compared position by position. Feed both the same "
            "inputs (e.g. the same `sequence_length` in both preprocessors). " + received
        )
    if student_classes is None or teacher_classes is None:
        return
    if 1 in (student_classes, teacher_classes):
        raise ValueError(
            "A model with one output unit (a binary, sigmoid-style classifier) cannot be "
            "distilled: the softmax of a single logit is always 1, so the loss would be 0 and "
            "the student would not change. Give the teacher and the student two output units: "
            "the logits [0, z] describe the same two classes as one sigmoid logit z (e.g. "
            "`keras.layers.Concatenate()([keras.ops.zeros_like(z), z])`). " + received
        )
    if shared_classes is not None:
        if min(student_classes, teacher_classes) < shared_classes:
            raise ValueError(
                f"`shared_classes={shared_classes}` is more than the student "
                f"({student_classes}) or the teacher ({teacher_classes}) has. " + received
            )
        return
    if student_classes != teacher_classes:
        fewer = min(student_classes, teacher_classes)
        hint = ""
        if fewer >= _VOCABULARY_SIZE:
            hint = (
                "If one vocabulary is padded (e.g. 50,304 vs 50,257 entries) and the first "
                f"classes are shared, pass `shared_classes={fewer}` to compare only those. "
            )
        raise ValueError(
            "The student's and the teacher's distilled outputs must have the same number "
            f"of classes to be compared ({student_classes} vs {teacher_classes}). "
            + hint
            + received
        )


def check_label_mask_value(value):
    """Returns the missing-label value: a whole number (e.g. `-1`, `-100`, `255`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != round(value):
        raise ValueError(
            "`label_mask_value` must be a whole number marking positions without a label "
            f"(e.g. -1, -100 or 255). Received: label_mask_value={value!r}"
        )
    return int(value)


def check_optional_name(name, value):
    """Returns `value`: `None` or a non-empty string."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(
            f"`{name}` must be the name of an input (a non-empty string) or None. "
            f"Received: {name}={value!r}"
        )
    return value


def looks_like_probabilities(outputs, atol=1e-3):
    """True when every row is in `[0, 1]` and sums to 1: softmax output, not logits."""
    values = np.asarray(outputs, dtype=np.float64)
    if values.ndim == 0 or values.shape[-1] < 2 or values.size == 0:
        return False
    in_range = np.all(values >= 0.0) and np.all(values <= 1.0)
    return bool(in_range and np.allclose(values.sum(axis=-1), 1.0, atol=atol))


def check_output_kinds(teacher_from_logits, teacher, student):
    """Checks the first batch's outputs: the teacher's against `teacher_from_logits`, the student's.

    Args:
        teacher_from_logits: Whether the teacher was declared to return logits.
        teacher: The teacher's outputs on the first batch.
        student: The student's outputs on the first batch.
    """
    teacher_probabilities = looks_like_probabilities(teacher)
    if teacher_from_logits and teacher_probabilities:
        raise ValueError(
            "The teacher returns probabilities (every row is in [0, 1] and sums to 1), "
            "but the Distiller was told they are logits. Pass "
            "`teacher_from_logits=False`, or remove the teacher's final softmax. "
            "Received: teacher_from_logits=True"
        )
    if not teacher_from_logits and not teacher_probabilities:
        values = np.asarray(teacher, np.float64)
        raise ValueError(
            "The Distiller was told the teacher returns probabilities, but its outputs are not "
            "rows in [0, 1] that sum to 1 (they look like logits). Pass "
            "`teacher_from_logits=True`, or end the teacher with a softmax. Received: "
            f"teacher_from_logits=False with values in [{values.min():.4g}, "
            f"{values.max():.4g}] and row sums from {values.sum(-1).min():.4g} to "
            f"{values.sum(-1).max():.4g}"
        )
    if looks_like_probabilities(student):
        raise ValueError(
            "The student returns probabilities (every row is in [0, 1] and sums to 1): it ends "
            "in a softmax, and the Distiller would apply a second one. Remove the student's "
            "final softmax (use `activation=None`; apply the softmax after training if you "
            "need probabilities). Received: student outputs that sum to 1 per row"
        )


def check_student_head(student):
    """Raises when a single-output student's last layer applies a softmax (static check)."""
    layers = getattr(student, "layers", None) or []
    if len(getattr(student, "outputs", None) or []) != 1 or not layers:
        return
    last = layers[-1]
    activation = getattr(last, "activation", None)
    if type(last).__name__ == "Softmax" or getattr(activation, "__name__", None) == "softmax":
        raise ValueError(
            f"The student's last layer {last.name!r} applies a softmax, and the Distiller "
            "applies its own to the logits: it would train on a double softmax. Remove it "
            "(use `activation=None`; apply the softmax after training if you need "
            f"probabilities). Received: student={student.name!r}"
        )


def check_unlabeled(model, x, y, class_weight):
    """Raises when `fit` gets no labels but `class_weight`, or Keras 3 metrics, need them."""
    if y is not None:
        return
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        if isinstance(spec, tuple) and len(spec) > 1:
            return
    elif not isinstance(x, (np.ndarray, tf.Tensor, dict, list, tuple)):
        return  # A generator: its batches are unknown until they come.
    if class_weight is not None:
        raise ValueError(
            "`class_weight` weighs examples by their label, but the data has no labels (x only). "
            "Pass labels `y`, or drop `class_weight`. "
            f"Received: class_weight={class_weight!r} with y=None"
        )
    if GENERATION == "keras3" and compiled_metric_objects(model):
        raise ValueError(
            "Metrics compare predictions with labels, but the data has no labels (x only). "
            "Compile without `metrics`, or pass labels `y`. "
            "Received: compiled metrics with y=None"
        )


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


def check_inputs_fit(name, array, expected):
    """Raises unless `array` (batch first) is finite and of shape `(batch, *expected)`."""
    expected = tuple(expected)
    received = tuple(array.shape[1:])
    if len(expected) != len(received) or any(
        want is not None and want != got for want, got in zip(expected, received)
    ):
        raise ValueError(
            f"`{name}` must hold inputs of the model's shape (batch, "
            f"{', '.join(str(d) for d in expected)}). "
            f"Received: {name} of shape {tuple(array.shape)}"
        )
    check_finite(name, array)


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


def check_fit_arguments(distiller, x, y, class_weight):
    """The checks `Distiller.fit` runs before reading data; returns `y` (a list as an array).

    The student is trainable and ends in no softmax, `x` is not ragged, and
    `class_weight` or metrics do not come without labels.
    """
    check_trainable("student", distiller.student)
    check_student_head(distiller.student)
    check_not_ragged("x", x)
    y = labels_as_array(y)
    check_unlabeled(distiller, x, y, class_weight)
    return y


def check_not_ragged(name, values):
    """Raises for ragged inputs: a `tf.RaggedTensor`, or Python rows of different lengths."""
    ragged = isinstance(values, tf.RaggedTensor)
    if (
        isinstance(values, (list, tuple))
        and values
        and all(isinstance(row, (list, tuple)) for row in values)
    ):
        lengths = sorted({len(row) for row in values})
        ragged = len(lengths) > 1
    if ragged:
        raise ValueError(
            f"`{name}` is ragged (its rows have different lengths), but the models take one "
            f"fixed shape. Pad the rows to one length (e.g. `keras.utils.pad_sequences`) or use "
            f"`.to_tensor()`. Received: {name} of type {type(values).__name__} with ragged rows"
        )


def labels_as_array(y):
    """`y` as a NumPy array when it is a plain Python list of labels; otherwise `y`.

    Keras reads a list as one array per output; a list of numbers means the
    labels of one output.
    """
    if (
        isinstance(y, (list, tuple))
        and y
        and all(isinstance(value, (numbers.Number, str, list, tuple)) for value in y)
    ):
        try:
            return np.asarray(y)
        except ValueError:
            raise ValueError(
                "`y` must be an array of labels, one per example. Received: y as a ragged "
                f"Python list starting {y[:3]!r}"
            ) from None
    return y


def check_labels(labels, num_classes, mask_value, logits_rank=2):
    """Raises when labels do not fit `num_classes` (sparse range or one-hot width).

    Labels with the rank of the logits (`logits_rank`) are one-hot rows
    unless their last axis has size 1; others are class indices.
    """
    if labels.dtype.kind not in "iufb":
        sample = labels.ravel()[:3].tolist()
        raise ValueError(
            f"Labels must be numbers: class indices 0..{num_classes - 1} or one-hot rows. Map "
            f"names to indices first (e.g. with `np.unique(y, return_inverse=True)`). "
            f"Received: y with dtype {labels.dtype} starting {sample}"
        )
    if labels.ndim == logits_rank and labels.shape[-1] != 1:
        if labels.shape[-1] != num_classes:
            raise ValueError(
                f"One-hot labels need {num_classes} columns, one per class of the models. "
                f"Received: y with shape {labels.shape}"
            )
        return
    missing = "" if mask_value is None else f" (or {mask_value} for a missing label)"
    present = labels if mask_value is None else labels[labels != mask_value]
    if present.size == 0:
        return
    bad = ~np.isfinite(present) | (present != np.round(present))
    if np.any(bad):
        value = str(present[np.argmax(bad)])
        count = "1 label is" if bad.sum() == 1 else f"{int(bad.sum())} labels are"
        raise ValueError(
            f"Sparse labels must be whole class indices in [0, {num_classes - 1}]{missing}; "
            f"{count} not, e.g. {value}. Round or remap them. Received: y={value}"
        )
    low, high = present.min(), present.max()
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"Sparse labels must be class indices in [0, {num_classes - 1}]{missing}. "
            f"Received: y with values from {low} to {high}"
        )


def _leaves(values):
    return [] if values is None else tf.nest.flatten(values)


def check_positive_number(name, value):
    """Returns `value` as a float, or raises unless it is a finite number > 0."""
    return _check_real(name, value, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def check_fraction(name, value):
    """Returns `value` as a float, or raises unless it lies strictly between 0 and 1."""
    return _check_real(name, value, lambda v: 0.0 < v < 1.0, "a number in (0, 1)")


def check_unit_interval(name, value, include_one=True, hint=""):
    """Returns `value` as a float, or raises unless it lies in `[0, 1]` (`[0, 1)`).

    `hint` (a sentence) is added to the message, e.g. what the ends mean.
    """
    interval = "[0, 1]" if include_one else "[0, 1)"
    expected = f"a number in {interval}" + (f". {hint}" if hint else "")
    high_ok = (lambda v: v <= 1.0) if include_one else (lambda v: v < 1.0)
    return _check_real(name, value, lambda v: 0.0 <= v and high_ok(v), expected)


def check_beta(beta):
    """Returns the generalized JSD's `beta` as a float, or raises unless it lies in `[0, 1]`."""
    return check_unit_interval(
        "beta", beta, hint="0 gives forward KL(p || q), 1 reverse KL(q || p), 0.5 the JSD"
    )


def check_skew(skew):
    """Returns a skew KL's `skew` as a float, or raises unless it lies in `[0, 1)`."""
    return check_unit_interval(
        "skew", skew, include_one=False, hint="0 gives the plain KL; DistiLLM uses 0.1"
    )


def _check_real(name, value, accept, expected):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not accept(value):
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return float(value)


def check_causal_lm(name, model):
    """Raises `TypeError` unless `model` is a keras_hub-style causal LM.

    Such a model has `call_with_cache(token_ids, cache, cache_update_index)`
    and a `backbone` that knows its layers and vocabulary.
    """
    backbone = getattr(model, "backbone", None)
    if not callable(getattr(model, "call_with_cache", None)) or backbone is None:
        raise TypeError(
            f"`{name}` must be a causal language model with `call_with_cache` and a `backbone` "
            "(a keras_hub `CausalLM` such as `GPT2CausalLM`, `LlamaCausalLM` or "
            "`GemmaCausalLM`). Export other models with `export_tflite`. "
            f"Received: {name}={type(model).__module__}.{type(model).__name__}"
        )
    for attribute in ("num_layers", "vocabulary_size", "hidden_dim"):
        if getattr(backbone, attribute, None) is None:
            raise TypeError(
                f"`{name}.backbone` must tell its `{attribute}` (the key/value cache is shaped "
                f"from it). Received: {name}.backbone={type(backbone).__name__}"
            )


def check_prompt(name, prompt, vocabulary_size, max_length):
    """Returns `prompt` as an int32 array, or raises unless it is a valid prompt.

    A prompt is a non-empty 1-D sequence of integer token ids in
    `[0, vocabulary_size)`, at most `max_length` long.
    """
    array = np.asarray(prompt)
    if array.dtype.kind not in "iu" or array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1-D sequence of integer token ids. "
            f"Received: {name} of shape {array.shape} and dtype {array.dtype}"
        )
    if len(array) > max_length:
        raise ValueError(
            f"`{name}` is longer than the {max_length} tokens the file's prefill takes; "
            "shorten it, or export with a larger `prefill_length`. "
            f"Received: {name} of length {len(array)}"
        )
    if array.min() < 0 or array.max() >= vocabulary_size:
        raise ValueError(
            f"`{name}` must hold token ids in [0, {vocabulary_size}). "
            f"Received: {name} with ids from {int(array.min())} to {int(array.max())}"
        )
    return array.astype(np.int32)


def check_kept_fraction(name, value):
    """Returns `value` as a float, or raises unless it lies in `(0, 1]`."""
    expected = "a number in (0, 1], the fraction of channels kept"
    return _check_real(name, value, lambda v: 0.0 < v <= 1.0, expected)


def check_lmbda(lmbda):
    """Returns on-policy distillation's `lmbda` as a float, or raises unless it lies in `[0, 1]`."""
    return check_unit_interval(
        "lmbda",
        lmbda,
        hint="the probability that a batch is the student's own samples: 0 never, 1 always",
    )


def check_generator(name, model, purpose):
    """Raises `TypeError` unless `model` is a keras_hub causal LM that can generate.

    Args:
        name: The argument's name, for the message.
        model: The model to check.
        purpose: What the generation is for, e.g. `"lmbda=0.5"`, for the message.
    """
    backbone = getattr(model, "backbone", None)
    if (
        not callable(getattr(model, "generate", None))
        or not callable(getattr(model, "call_with_cache", None))
        or backbone is None
        or any(getattr(backbone, a, None) is None for a in ("num_layers", "hidden_dim"))
    ):
        raise TypeError(
            f"`{name}` must be a causal language model that can generate (`generate` and "
            "`call_with_cache`, e.g. a keras_hub `GPT2CausalLM`, `LlamaCausalLM` or "
            f"`GemmaCausalLM`), because {purpose} samples continuations from it. Use the "
            "`Distiller` (or `lmbda=0` without `seq_kd`) to distil on the data alone. "
            f"Received: {name}={type(model).__module__}.{type(model).__name__}"
        )


def check_sequence_fits(name, model, length, received):
    """Raises unless `length` positions fit the position embedding of `model`'s backbone.

    Models without `backbone.max_sequence_length` (rotary positions) pass.
    `received` names the arguments or data that set `length`, for the message.
    """
    built_for = getattr(getattr(model, "backbone", None), "max_sequence_length", None)
    if built_for is not None and length > built_for:
        raise ValueError(
            f"Generation would run to position {length}, but the {name}'s backbone holds at "
            f"most {built_for} positions (`max_sequence_length`). Shorten the sequences (e.g. "
            "the preprocessor's `sequence_length`) or lower `prompt_length` and "
            f"`max_new_tokens`. Received: {received}"
        )


TOKENIZER_PROBE = "The quick brown fox jumps over the lazy dog. 0123456789 {[(+-*/=)]}\n"
"""Text both tokenizers of a teacher and student encode when their preprocessors are known."""


def check_same_tokenizer(student, teacher):
    """Raises unless the models' tokenizers agree, where both models carry one.

    A keras_hub task model keeps its tokenizer at `model.preprocessor.tokenizer`.
    Compared: the vocabulary size, the ids of `TOKENIZER_PROBE`, and the end
    token id. Models without a preprocessor are not checked here (their logits'
    class counts still are).
    """
    tokenizers = [
        getattr(getattr(m, "preprocessor", None), "tokenizer", None) for m in (student, teacher)
    ]
    if any(t is None for t in tokenizers):
        return
    fix = (
        "Token-level distillation compares the two models' distributions token by token, so "
        "both must use one tokenizer: build the student's preprocessor from the teacher's "
        "tokenizer (e.g. `student.preprocessor = teacher.preprocessor`) and size the "
        "student's vocabulary from it."
    )
    sizes = [int(t.vocabulary_size()) for t in tokenizers]
    if sizes[0] != sizes[1]:
        raise ValueError(
            "The student's and the teacher's tokenizers have different vocabularies. "
            f"{fix} Received: student vocabulary_size={sizes[0]}, teacher "
            f"vocabulary_size={sizes[1]}"
        )
    ids = [np.asarray(t(TOKENIZER_PROBE)).reshape(-1).tolist() for t in tokenizers]
    if ids[0] != ids[1]:
        raise ValueError(
            "The student's and the teacher's tokenizers give different token ids for the "
            f"same text {TOKENIZER_PROBE[:20]!r}... {fix} Received: student ids "
            f"{ids[0][:8]}, teacher ids {ids[1][:8]}"
        )
    ends = [getattr(t, "end_token_id", None) for t in tokenizers]
    if ends[0] != ends[1]:
        raise ValueError(
            f"The student's and the teacher's tokenizers end text with different tokens. {fix} "
            f"Received: student end_token_id={ends[0]}, teacher end_token_id={ends[1]}"
        )


def check_image_shape(image_shape, example_shape):
    """`(height, width, channels)` of one image, or raises naming `image_shape`.

    Args:
        image_shape: `(height, width)` or `(height, width, channels)` of
            positive integers, or `None` when the examples are images
            already (`example_shape` of rank 3).
        example_shape: The shape of one example as given, e.g. `(784,)`.
    """
    example_shape = tuple(int(d) for d in example_shape)
    size = int(np.prod(example_shape))
    if image_shape is None:
        if len(example_shape) == 3:
            return example_shape
        raise ValueError(
            "Image views need images: examples of shape (height, width, channels), or "
            "`image_shape` to read flat examples as images, e.g. image_shape=(28, 28, 1). "
            f"Received: image_shape=None for examples of shape {example_shape}"
        )
    try:
        dims = tuple(image_shape)
    except TypeError:
        dims = ()
    valid = len(dims) in (2, 3) and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in dims
    )
    if not valid or int(np.prod(dims)) != size:
        raise ValueError(
            "`image_shape` must be (height, width) or (height, width, channels) of integers "
            f">= 1 whose product is the number of values in one example ({size}, from "
            f"examples of shape {example_shape}). Received: image_shape={image_shape!r}"
        )
    return tuple(int(d) for d in dims) + ((1,) if len(dims) == 2 else ())
