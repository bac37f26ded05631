"""Checks of each batch inside the compiled train and test steps.

The first-batch checks (`Distiller.fit`) see one batch; these see every batch,
at the cost of a few reductions per step: sparse labels are whole class
indices in range (or the missing-label value), a teacher declared to return
probabilities does, and `x`, the sample weights, the teacher's logits, the
loss and the gradients are finite. A failed check stops the step
*before* the weights change, with an `InvalidArgumentError` that
`reraise_as_value_error` turns into a `ValueError` at the `fit`/`evaluate`
boundary.

XLA (`jit_compile=True`) compiles no assertions, so the checks run in graph
mode (Keras' default on CPU) and eager mode, and are skipped under XLA.
"""

import contextlib
import contextvars
import re

import tensorflow as tf

from keras_distill._keras import keras
from keras_distill.callbacks import StopOnNonFinite
from keras_distill.teachers import cache as cache_lib

PREFIX = "keras_distill: "
_ONE_VALUE = ("loss", "gradients")
_EVALUATION = "an evaluation batch"
_CONVERTING = contextvars.ContextVar("keras_distill_converting", default=False)
_STEP = re.compile(r"training step (\d+)")
# Graph mode: "assertion failed: [keras_distill: ...]"; eager: "Summarized data: b'...'".
_MESSAGE = re.compile(re.escape(PREFIX) + r"(.*?Received: .*?)(?=\]\s|\]$|['\"]\s|['\"]$)")


def is_sparse(labels, logits):
    """True for class-index labels, False for one-hot (or soft) rows."""
    return not (labels.shape.rank == logits.shape.rank and labels.shape[-1] != 1)


def flat_sparse_labels(labels, logits):
    """Sparse labels reshaped to the logits' shape without classes, e.g. `(n, 1, 1)` to `(n,)`.

    Keras 3's accuracy compares `(n, 1, 1)` labels with `(n,)` predictions by
    broadcasting, which gives a wrong number without an error. One-hot
    labels are returned unchanged.
    """
    if labels.shape.rank is None or not is_sparse(labels, logits):
        return labels
    return tf.reshape(labels, tf.shape(logits)[:-1])


def label_checks(labels, logits, mask_value, where):
    """Asserts that sparse `labels` are whole class indices in range (or `mask_value`).

    Args:
        labels: The batch's labels (a tensor).
        logits: The teacher's logits `(batch, num_classes)`.
        mask_value: The missing-label value, always allowed.
        where: Words for the position, e.g. `"training step 3"` (a string tensor).

    Returns:
        A list of assertion ops (empty for one-hot labels).
    """
    if not is_sparse(labels, logits) or not (labels.dtype.is_integer or labels.dtype.is_floating):
        return []
    raw = tf.reshape(labels, [-1])
    num_classes = tf.shape(logits)[-1]
    values = tf.cast(raw, tf.float64)
    allowed = tf.logical_and(values >= 0.0, values < tf.cast(num_classes, tf.float64))
    allowed = tf.logical_and(allowed, tf.equal(values, tf.round(values)))
    allowed = tf.logical_or(allowed, tf.equal(values, float(mask_value)))
    first = tf.argmin(tf.cast(allowed, tf.int32))
    value = _text(raw[first])
    message = tf.strings.join(
        [
            PREFIX,
            "`y` must hold class indices 0, 1, ..., ",
            _text(num_classes - 1),
            f" (or {mask_value} for a missing label); in ",
            where,
            ", row ",
            _text(first),
            " of the batch holds ",
            value,
            ". Fix the labels (round or remap them), or give one-hot ",
            "rows of width ",
            _text(num_classes),
            ". Received: y=",
            value,
        ]
    )
    return [_assert(tf.reduce_all(allowed), message)]


def finite_checks(named_values, where):
    """Asserts that the float tensors of `named_values` are finite.

    Args:
        named_values: `[(description, argument name, nest of tensors)]`; the
            first dimension of a tensor is its rows, except for an argument
            named `loss` or `gradients` (one value).
        where: Words for the position (a string tensor).

    Returns:
        A list of assertion ops. Only the first failing value raises (a NaN in
        `x` also makes the loss NaN; the message names `x`).
    """
    checks = []
    earlier_finite = tf.constant(True)
    for description, argument, values in named_values:
        for leaf in tf.nest.flatten(values):
            if leaf is None:
                continue
            leaf = tf.convert_to_tensor(leaf)
            if not leaf.dtype.is_floating:
                continue
            rows = tf.reshape(tf.math.is_finite(leaf), [tf.shape(leaf)[0], -1])
            finite = tf.reduce_all(rows, axis=-1)
            first = _text(tf.argmin(tf.cast(finite, tf.int32)))
            row = [] if argument in _ONE_VALUE else [", row ", first, " of the batch"]
            message = tf.strings.join(
                [
                    PREFIX,
                    description,
                    " is NaN or Inf in ",
                    where,
                    *row,
                    ". Training stopped "
                    "before this batch changed any weight. Remove or fix the bad rows (lower the "
                    "learning rate if the loss overflows), or pass `compile(data_checks=False)` to "
                    "skip these checks. Received: ",
                    argument,
                    " with a non-finite value",
                    *row[:2],
                ]
            )
            all_finite = tf.reduce_all(finite)
            first_failure = tf.logical_or(all_finite, tf.logical_not(earlier_finite))
            checks.append(_assert(first_failure, message))
            earlier_finite = tf.logical_and(earlier_finite, all_finite)
    return checks


def after(checks, values):
    """`values` (a nest, `None` leaves allowed) that can only be read once `checks` passed."""
    if not checks:
        return values
    with tf.control_dependencies(checks):
        return tf.nest.map_structure(
            lambda value: value if value is None else tf.identity(value),
            values,
            expand_composites=True,
        )


def prepare_fit(model, fit_kwargs):
    """Chooses the checks for `model.fit(**fit_kwargs)` and adds a `Position` callback.

    Returns:
        The `Position` callback, or `None` when `callbacks` is not a list.
    """
    callbacks = fit_kwargs.get("callbacks")
    use_kinds(model, callbacks if isinstance(callbacks, (list, tuple)) else [])
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        return None
    position = Position()
    fit_kwargs["callbacks"] = list(callbacks or []) + [position]
    return position


def use_kinds(model, callbacks):
    """Chooses the checks for the next `fit`; retraces the steps when the choice changed.

    Finiteness is left to a `StopOnNonFinite` callback when one is given (it
    stops and restores weights itself).
    """
    kinds = ("labels", "finite") if getattr(model, "data_checks", True) else ()
    if any(isinstance(callback, StopOnNonFinite) for callback in callbacks or []):
        kinds = tuple(kind for kind in kinds if kind != "finite")
    if getattr(model, "_data_check_kinds", None) not in (None, kinds):
        model.train_function = model.test_function = None
    model._data_check_kinds = kinds


def checked_labels(model, y, teacher_logits, training):
    """`y`, readable only once its sparse labels passed `label_checks` (if chosen).

    Run before the loss: the cross-entropy raises its own, vaguer error on
    labels out of range.

    Args:
        model: The `Distiller`: its `label_mask_value` and chosen checks.
        y: The labels, or `None` (nested labels are returned unchecked).
        teacher_logits: Float32 `(batch, num_classes)`.
        training: Whether this is a training step (the position is its step).
    """
    if "labels" not in _kinds(model) or y is None or isinstance(y, (dict, list, tuple)):
        return y
    where = position(model.optimizer.iterations if training else None)
    labels = tf.convert_to_tensor(y)
    return after(label_checks(labels, teacher_logits, model.label_mask_value, where), labels)


def step_checks(model, data, teacher_logits, loss, training, gradients=()):
    """The checks of one step of `model` (a `Distiller`) on the batch `data`, after its loss.

    With the `"labels"` kind: a teacher declared to return probabilities
    does. With `"finite"`: `x`, the sample weights, the teacher's logits, the
    loss and the gradients are finite.

    Args:
        model: The `Distiller`: its chosen checks.
        data: The batch, `x`, `(x, y)` or `(x, y, sample_weight)`.
        teacher_logits: Float32 `(batch, num_classes)`.
        loss: The batch's total loss.
        training: Whether this is a training step (the position is its step).
        gradients: The gradients, checked unless the optimizer scales the loss
            (mixed precision), where non-finite steps are expected and skipped.

    Returns:
        A list of assertion ops, for `after`.
    """
    kinds = _kinds(model)
    if not kinds:
        return []
    x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    cached = cache_lib.is_cached_batch(x)
    x = x[cache_lib.INPUTS_KEY] if cached else x
    where = position(model.optimizer.iterations if training else None)
    checks = []
    declared_probabilities = getattr(model, "teacher_from_logits", True) is False
    if "labels" in kinds and declared_probabilities and not cached:
        checks += probability_checks(teacher_logits, where)
    if "finite" not in kinds:
        return checks
    named = [
        ("`x`", "x", x),
        ("`sample_weight`", "sample_weight", sample_weight),
        ("The teacher's output", "teacher outputs", teacher_logits),
        ("The loss (its inputs are finite, so it overflowed)", "loss", tf.reshape(loss, [1])),
    ]
    gradients = [g for g in gradients if g is not None]
    if gradients and not _scales_loss(model.optimizer):
        values = [g.values if isinstance(g, tf.IndexedSlices) else g for g in gradients]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in values])
        named.append(
            (
                "A gradient (the loss is finite, but its gradient overflowed)",
                "gradients",
                tf.where(finite, 0.0, float("nan"))[None],
            )
        )
    return checks + finite_checks(named, where)


def probability_checks(log_probabilities, where):
    """Asserts that a teacher declared to return probabilities did: rows summing to 1.

    Args:
        log_probabilities: `log(max(p, 1e-12))` of the teacher's outputs `p`.
        where: Words for the position (a string tensor).
    """
    sums = tf.reduce_sum(tf.exp(log_probabilities), axis=-1)
    good = tf.abs(sums - 1.0) <= 1e-3
    first = tf.argmin(tf.cast(good, tf.int32))
    message = tf.strings.join(
        [
            PREFIX,
            "The teacher was declared to return probabilities, but in ",
            where,
            ", row ",
            _text(first),
            " of its outputs (negatives counted as 0) sums to ",
            _text(sums[first]),
            ", not 1: it returns logits. Pass `teacher_from_logits=True`, or end the teacher with "
            "a softmax. Received: teacher_from_logits=False",
        ]
    )
    return [_assert(tf.reduce_all(good), message)]


def _scales_loss(optimizer):
    """True for a mixed-precision `LossScaleOptimizer` (it skips non-finite steps itself)."""
    return "LossScaleOptimizer" in [cls.__name__ for cls in type(optimizer).__mro__]


def _kinds(model):
    """The checks chosen for `model`: none under XLA, which compiles no assertions."""
    if getattr(model, "jit_compile", False) is True:
        return ()
    default = ("labels", "finite") if getattr(model, "data_checks", True) else ()
    return getattr(model, "_data_check_kinds", default)


def position(step=None):
    """Words for the batch's position: the global training step, or an evaluation batch."""
    if step is None:
        return tf.constant(_EVALUATION)
    return tf.strings.join(["training step ", _text(step)])


class Position(keras.callbacks.Callback):
    """Remembers the epoch and the optimizer's step count at its start, to name batches."""

    def __init__(self):
        super().__init__()
        self.epoch = None
        self.first_step = 0
        self.test_batch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.first_step = int(self.model.optimizer.iterations.numpy())
        self.test_batch = None

    def on_test_batch_begin(self, batch, logs=None):
        self.test_batch = batch

    def describe(self, text):
        """`text` with "training step N" spelled as epoch, batch and step, and with the
        validation batch named."""
        if self.epoch is None:
            return text
        if self.test_batch is not None:
            text = text.replace(
                _EVALUATION,
                f"validation batch {self.test_batch} (`validation_data`, epoch {self.epoch})",
            )

        def spell(match):
            step = int(match.group(1))
            return f"epoch {self.epoch}, batch {step - self.first_step} (training step {step})"

        return _STEP.sub(spell, text)


@contextlib.contextmanager
def reraise_as_value_error(position=None):
    """Turns a failed check inside `fit`/`evaluate` into a `ValueError` with its message.

    Args:
        position: The fit's `Position` callback, to name the epoch and batch.
    """
    outermost = not _CONVERTING.get()
    token = _CONVERTING.set(True)
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        match = _MESSAGE.search(str(error))
        if match is None or not outermost:  # `fit` converts what its validation raises.
            raise
        text = match.group(1).replace("\\'", "'")
        raise ValueError(position.describe(text) if position else text) from None
    finally:
        _CONVERTING.reset(token)


def _text(value):
    """A scalar tensor as a string tensor, floats in their shortest exact form."""
    value = tf.convert_to_tensor(value)
    if value.dtype.is_floating:
        return tf.strings.as_string(value, shortest=True)
    return tf.strings.as_string(value)


def _assert(condition, message):
    return tf.debugging.Assert(condition, [message], summarize=1)
