"""Checks of each batch inside the compiled train and test steps.

The first-batch checks (`Distiller.fit`) see one batch; these see every batch,
at the cost of a few reductions per step: sparse labels are whole class
indices in range (or the missing-label value), a teacher declared to return
probabilities does, and `x`, the sample weights, the teacher's logits, the
loss and the gradients are finite. A failed check stops the step
*before* the weights change, with an `InvalidArgumentError` that
`reraise_as_value_error` turns into a `ValueError` at the `fit`/`evaluate`
boundary.

XLA (`jit_compile=True`, Keras 3's default on GPUs) compiles no assertions
and no strings. There each check is a number: the first failure of a run is
written to a `Record` (which check, its row and value, the step), the
update of that batch and of every later batch is skipped (the weights stay
those before the bad batch), and the `Position` callback raises the same
`ValueError` at the end of the epoch (`evaluate`: at its end), after one
scalar read per epoch instead of one per batch. Under XLA with several
replicas (multi-GPU) the in-step checks are skipped.
"""

import contextlib
import contextvars
import re
import string
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_distill._keras import keras
from keras_distill.callbacks import StopOnNonFinite
from keras_distill.teachers import cache as cache_lib

PREFIX = "keras_distill: "
_ONE_VALUE = ("loss", "gradients")
_EVALUATION = "an evaluation batch"
_TRAINING_STEP = "training step {}"
# Numbers a check can report: its row, its value, the number of classes and the last class.
_MAX_FIELDS = 4
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


# These run while a step is traced; AutoGraph (tf_keras converts the step) must leave their
# Python lists and loops alone.
_plain_python = tf.autograph.experimental.do_not_convert


class Finding(NamedTuple):
    """One check of a batch: whether it passed, and the words and numbers that say why not.

    Attributes:
        ok: Scalar bool tensor.
        template: The message, with `{where}` for the batch's position and
            `{name}` for each entry of `fields`.
        fields: `{name: scalar tensor}`, at most four, integers or floats.
    """

    ok: tf.Tensor
    template: str
    fields: dict


@_plain_python
def label_finding(labels, logits, mask_value):
    """Sparse `labels` are whole class indices in range (or `mask_value`); `None` for one-hot.

    Args:
        labels: The batch's labels (a tensor).
        logits: The teacher's logits `(batch, num_classes)`.
        mask_value: The missing-label value, always allowed.
    """
    if not is_sparse(labels, logits) or not (labels.dtype.is_integer or labels.dtype.is_floating):
        return None
    raw = tf.reshape(labels, [-1])  # Row `i` of a batch with positions is its `i`-th position.
    num_classes = tf.shape(logits)[-1]
    values = tf.cast(raw, tf.float64)
    allowed = tf.logical_and(values >= 0.0, values < tf.cast(num_classes, tf.float64))
    allowed = tf.logical_and(allowed, tf.equal(values, tf.round(values)))
    allowed = tf.logical_or(allowed, tf.equal(values, float(mask_value)))
    first = tf.argmin(tf.cast(allowed, tf.int32), output_type=tf.int32)
    template = (
        "`y` must hold class indices 0, 1, ..., {last_class} "
        f"(or {mask_value} for a missing label); in "
        "{where}, row {row} of the batch holds {value}. Fix the labels (round or remap them), "
        "or give one-hot rows of width {num_classes}. Received: y={value}"
    )
    # `tf.gather`, not `raw[first]`: XLA compiles that dynamic slice five times slower.
    fields = {
        "row": first,
        "value": tf.gather(raw, first),
        "num_classes": num_classes,
        "last_class": num_classes - 1,
    }
    return Finding(tf.reduce_all(allowed), template, fields)


@_plain_python
def finite_findings(named_values):
    """The float tensors of `named_values` are finite.

    Args:
        named_values: `[(description, argument name, nest of tensors)]`; the
            first dimension of a tensor is its rows, except for an argument
            named `loss` or `gradients` (one value).

    Returns:
        A list of findings, one per float tensor. Only the first failure is
        reported (a NaN in `x` also makes the loss NaN; the message names `x`).
    """
    findings = []
    for description, argument, values in named_values:
        for leaf in tf.nest.flatten(values):
            if leaf is None:
                continue
            leaf = tf.convert_to_tensor(leaf)
            if not leaf.dtype.is_floating:
                continue
            rows = tf.reshape(tf.math.is_finite(leaf), [tf.shape(leaf)[0], -1])
            finite = tf.reduce_all(rows, axis=-1)
            first = tf.argmin(tf.cast(finite, tf.int32), output_type=tf.int32)
            one_value = argument in _ONE_VALUE
            at_row = "" if one_value else ", row {row} of the batch"
            template = (
                f"{description} is NaN or Inf in {{where}}{at_row}. Training stopped before "
                "this batch changed any weight. Remove or fix the bad rows (lower the learning "
                "rate if the loss overflows), or pass `compile(data_checks=False)` to skip these "
                f"checks. Received: {argument} with a non-finite value{at_row[:-13]}"
            )
            fields = {} if one_value else {"row": first}
            findings.append(Finding(tf.reduce_all(finite), template, fields))
    return findings


@_plain_python
def probability_finding(log_probabilities):
    """A teacher declared to return probabilities did: rows summing to 1.

    Args:
        log_probabilities: `log(max(p, 1e-12))` of the teacher's outputs `p`.
    """
    sums = tf.reshape(tf.reduce_sum(tf.exp(log_probabilities), axis=-1), [-1])  # every position
    good = tf.abs(sums - 1.0) <= 1e-3
    first = tf.argmin(tf.cast(good, tf.int32), output_type=tf.int32)
    template = (
        "The teacher was declared to return probabilities, but in {where}, row {row} of its "
        "outputs (negatives counted as 0) sums to {sum}, not 1: it returns logits. Pass "
        "`teacher_from_logits=True`, or end the teacher with a softmax. "
        "Received: teacher_from_logits=False"
    )
    return Finding(tf.reduce_all(good), template, {"row": first, "sum": tf.gather(sums, first)})


@_plain_python
def mask_finding(mask, argument):
    """A padding mask holds values in [0, 1] only.

    Args:
        mask: The batch's mask `(batch, ...)`.
        argument: Its name in messages.
    """
    raw = tf.reshape(mask, [-1])
    values = tf.cast(raw, tf.float64)
    allowed = tf.logical_and(values >= 0.0, values <= 1.0)
    first = tf.argmin(tf.cast(allowed, tf.int32), output_type=tf.int32)
    template = (
        f"The padding mask `x[{argument!r}]` must hold values in [0, 1] (1 for a real "
        "position, 0 for padding); in {where}, position {row} of the batch holds {value}. "
        f"Received: {argument}={{value}}"
    )
    fields = {"row": first, "value": tf.gather(raw, first)}
    return Finding(tf.reduce_all(allowed), template, fields)


@_plain_python
def assertions(findings, where):
    """Graph and eager mode: an assertion per finding; only the first failure raises.

    Args:
        findings: Findings in the order of precedence.
        where: Words for the position (a string tensor).
    """
    checks = []
    earlier_passed = tf.constant(True)
    for finding in findings:
        first_failure = tf.logical_or(finding.ok, tf.logical_not(earlier_passed))
        message = tf.strings.join([PREFIX] + _message_parts(finding, where))
        checks.append(tf.debugging.Assert(first_failure, [message], summarize=1))
        earlier_passed = tf.logical_and(earlier_passed, finding.ok)
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
    # First, so that a failure recorded under XLA stops the run before other callbacks see it.
    fit_kwargs["callbacks"] = [position] + list(callbacks or [])
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


class StepGuard:
    """The checks of one train or test step of a `Distiller`, in the mode its compilation allows.

    Graph and eager mode: assertions that stop the step before the weights
    change. XLA: findings written to the model's `Record`, and an update
    that runs only while no batch of the run has failed.

    Args:
        model: The `Distiller`: its chosen checks, `jit_compile`, optimizer.
        training: Whether this is a training step.
    """

    def __init__(self, model, training):
        self.model, self.training = model, training
        self.kinds = _kinds(model)
        self.xla = bool(self.kinds) and getattr(model, "jit_compile", False) is True
        self.findings = []

    @_plain_python
    def labels(self, y, teacher_logits):
        """`y`, checked when sparse (before the loss: cross-entropy raises vaguer errors)."""
        if "labels" not in self.kinds or y is None or isinstance(y, (dict, list, tuple)):
            return y
        labels = tf.convert_to_tensor(y)
        finding = label_finding(labels, teacher_logits, self.model.label_mask_value)
        return self._checked([finding] if finding else [], labels)

    @_plain_python
    def values(self, data, teacher_logits, loss, values, gradients=()):
        """`values` once the batch `data`, the teacher's outputs, `loss` and `gradients` passed.

        With the `"labels"` kind: a teacher declared to return probabilities
        does. With `"finite"`: `x`, the sample weights, the teacher's logits,
        the loss and the gradients are finite. Gradients are not checked when
        the optimizer scales the loss (mixed precision), which skips
        non-finite steps itself.
        """
        if not self.kinds:
            return values
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        cached = cache_lib.is_cached_batch(x)
        x = x[cache_lib.INPUTS_KEY] if cached else x
        findings = []
        declared_probabilities = getattr(self.model, "teacher_from_logits", True) is False
        if "labels" in self.kinds and declared_probabilities and not cached:
            findings.append(probability_finding(teacher_logits))
        mask_input = getattr(self.model, "padding_mask_input", None)
        if "labels" in self.kinds and isinstance(x, dict) and mask_input in x:
            findings.append(mask_finding(x[mask_input], mask_input))
        if "finite" in self.kinds:
            named = [
                ("`x`", "x", x),
                ("`sample_weight`", "sample_weight", sample_weight),
                ("The teacher's output", "teacher outputs", teacher_logits),
                (
                    "The loss (its inputs are finite, so it overflowed)",
                    "loss",
                    tf.reshape(loss, [1]),
                ),
            ]
            gradients = [g for g in gradients if g is not None]
            if gradients and not _scales_loss(self.model.optimizer):
                parts = [g.values if isinstance(g, tf.IndexedSlices) else g for g in gradients]
                finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in parts])
                named.append(
                    (
                        "A gradient (the loss is finite, but its gradient overflowed)",
                        "gradients",
                        tf.where(finite, 0.0, float("nan"))[None],
                    )
                )
            findings += finite_findings(named)
        return self._checked(findings, values)

    @_plain_python
    def update(self, apply, gradients):
        """Runs `apply(gradients)` (the optimizer step); under XLA only while no batch failed."""
        if not self.xla:
            apply(gradients)
            return
        passed = self.record()

        def run(values):
            apply(values)
            return tf.constant(True)

        tf.cond(passed, lambda: run(gradients), lambda: tf.constant(False))

    @_plain_python
    def record(self):
        """XLA: writes the first failure of the run to the `Record`; True while none failed."""
        if not self.xla:
            return tf.constant(True)
        record = self.model._data_check_record
        clean = tf.equal(record.kind, 0)
        passed = tf.constant(True)
        if self.findings:
            oks = tf.stack([finding.ok for finding in self.findings])
            passed = tf.reduce_all(oks)
            first = tf.argmin(tf.cast(oks, tf.int32), output_type=tf.int32)
            kinds = tf.constant([record.kind_of(finding) for finding in self.findings], tf.int32)
            fields = tf.stack([record.numbers(finding) for finding in self.findings])
            step = self.model.optimizer.iterations if self.training else -1
            record.write(
                tf.logical_and(clean, tf.logical_not(passed)),
                tf.gather(kinds, first),
                tf.gather(fields, first),
                tf.cast(step, tf.int64),
            )
        if not self.training:
            record.test_batches.assign_add(1)
        return tf.logical_and(passed, clean)

    def _checked(self, findings, values):
        if self.xla:
            self.findings += findings
            return values
        where = position(self.model.optimizer.iterations if self.training else None)
        return after(assertions(findings, where), values)


class Record:
    """XLA: the first failed check of a `fit` or `evaluate`, in variables the step can write.

    `kind` is 0 while every check passed, else the index (from 1) of the
    failed check's template; `values` are its fields; `step` the training
    step (-1: an evaluation batch, `test_batch` its index). Kept out of the
    model's tracked weights.
    """

    def __init__(self):
        self.templates = []
        self.kind = tf.Variable(0, dtype=tf.int32, trainable=False, name="failed_check")
        self.values = tf.Variable(
            tf.zeros([_MAX_FIELDS], tf.float64), trainable=False, name="failed_values"
        )
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="failed_step")
        self.test_batch = tf.Variable(0, dtype=tf.int64, trainable=False, name="failed_batch")
        self.test_batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="test_batches")

    def kind_of(self, finding):
        """The index (from 1) of `finding`'s template and field types, added when new."""
        key = (
            finding.template,
            tuple((name, tensor.dtype.name) for name, tensor in finding.fields.items()),
        )
        if key not in self.templates:
            self.templates.append(key)
        return self.templates.index(key) + 1

    def numbers(self, finding):
        values = [tf.cast(value, tf.float64) for value in finding.fields.values()]
        return tf.stack(values + [tf.constant(0.0, tf.float64)] * (_MAX_FIELDS - len(values)))

    def write(self, new, kind, values, step):
        self.kind.assign(tf.where(new, kind, self.kind))
        self.values.assign(tf.where(new, values, self.values))
        self.step.assign(tf.where(new, step, self.step))
        self.test_batch.assign(tf.where(new, self.test_batches, self.test_batch))

    def reset(self):
        for variable in (self.kind, self.step, self.test_batch, self.test_batches):
            variable.assign(tf.zeros_like(variable))

    def message(self):
        """The failure's message (position: "training step N" or an evaluation batch), or None."""
        kind = int(self.kind.numpy())
        if kind == 0:
            return None
        template, types = self.templates[kind - 1]
        numbers = dict(zip((name for name, _ in types), self.values.numpy()))
        texts = {name: _python_text(numbers[name], dtype) for name, dtype in types}
        step = int(self.step.numpy())
        where = _EVALUATION if step < 0 else _TRAINING_STEP.format(step)
        return template.format(where=where, **texts)


def record_for(model):
    """The model's `Record` under XLA with checks on, reset for a new run; else `None`."""
    if not _kinds(model) or getattr(model, "jit_compile", False) is not True:
        return None
    record = getattr(model, "_data_check_record", None)
    if record is None:
        with model.distribute_strategy.scope():
            record = Record()
        # A plain attribute: neither Keras nor tf.train.Checkpoint tracks it.
        object.__setattr__(model, "_data_check_record", record)
    record.reset()
    return record


def raise_recorded(model, position=None):
    """Raises the `ValueError` of a failure recorded under XLA, if any."""
    record = getattr(model, "_data_check_record", None)
    text = None if record is None else record.message()
    if text is None:
        return
    if position is not None:
        evaluation = int(record.step.numpy()) < 0
        position.test_batch = int(record.test_batch.numpy()) if evaluation else None
        text = position.describe(text)
    record.reset()
    raise ValueError(text)


def _scales_loss(optimizer):
    """True for a mixed-precision `LossScaleOptimizer` (it skips non-finite steps itself)."""
    return "LossScaleOptimizer" in [cls.__name__ for cls in type(optimizer).__mro__]


def _kinds(model):
    """The checks chosen for `model` (`"labels"`, `"finite"`), from `data_checks` and callbacks.

    None under XLA with several replicas: there the optimizer synchronises
    the replicas, which a conditional update in each replica cannot hold.
    """
    if (
        getattr(model, "jit_compile", False) is True
        and model.distribute_strategy.num_replicas_in_sync > 1
    ):
        return ()
    default = ("labels", "finite") if getattr(model, "data_checks", True) else ()
    return getattr(model, "_data_check_kinds", default)


def position(step=None):
    """Words for the batch's position: the global training step, or an evaluation batch."""
    if step is None:
        return tf.constant(_EVALUATION)
    return tf.strings.join([_TRAINING_STEP.format(""), _text(step)])


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

    def on_test_begin(self, logs=None):
        record = getattr(self.model, "_data_check_record", None)
        if record is not None:
            record.test_batches.assign(0)

    def on_test_batch_begin(self, batch, logs=None):
        self.test_batch = batch

    def on_epoch_end(self, epoch, logs=None):
        raise_recorded(self.model, self)

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
def reraise_as_value_error(model, position=None):
    """Turns a failed check inside `fit`/`evaluate` of `model` into a `ValueError`.

    Graph and eager mode: the failed assertion's message. XLA: the failure
    written to the model's `Record`, which is reset when the run starts.

    Args:
        model: The `Distiller`.
        position: The fit's `Position` callback, to name the epoch and batch.
    """
    outermost = not _CONVERTING.get()
    token = _CONVERTING.set(True)
    if outermost:  # `fit` converts what its validation raises.
        record_for(model)
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        match = _MESSAGE.search(str(error))
        if match is None or not outermost:
            raise
        text = match.group(1).replace("\\'", "'")
        raise ValueError(position.describe(text) if position else text) from None
    finally:
        _CONVERTING.reset(token)
    if outermost:
        raise_recorded(model, position)


def _text(value):
    """A scalar tensor as a string tensor, floats in their shortest exact form."""
    value = tf.convert_to_tensor(value)
    if value.dtype.is_floating:
        return tf.strings.as_string(value, shortest=True)
    return tf.strings.as_string(value)


def _message_parts(finding, where):
    """The pieces of `finding`'s message as string tensors, `{where}` replaced by `where`."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(finding.template):
        parts.append(literal)
        if name is not None:
            parts.append(where if name == "where" else _text(finding.fields[name]))
    return parts


def _python_text(number, dtype):
    """`number` (recorded as float64) written as `_text` writes a tensor of `dtype`."""
    if dtype.startswith(("int", "uint")):
        return str(int(number))
    text = str(getattr(np, dtype, np.float64)(number))  # NumPy's shortest form, as TensorFlow's.
    return text[:-2] if text.endswith(".0") else text
