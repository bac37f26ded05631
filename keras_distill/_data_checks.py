"""The checks of every batch inside the compiled train and test steps of a `Distiller`.

The first-batch checks (`Distiller.fit`) see one batch; these see every batch,
at the cost of a few reductions per step: sparse labels are whole class
indices in range (or the missing-label value), a teacher declared to return
probabilities does, a padding mask holds values in [0, 1], and `x`, the
sample weights, the teacher's logits, the loss and the gradients are finite.

Each `Distiller` owns one `StepChecks`. A check is a number, not a string:
the first failure of a run is written to its `Record` (which check, its
row and value, the step), from which the `ValueError` is written in Python.
In graph and eager mode an assertion then stops the step before the weights
change, and `StepChecks.reporting` turns it into that `ValueError` at the
`fit`/`evaluate` boundary. XLA (`jit_compile=True`, Keras 3's default on
GPUs) compiles no assertions: the update of the failed batch and of every
later batch is skipped (the weights stay those before the bad batch), and the
`Position` callback raises the same `ValueError` at the end of the epoch
(`evaluate`: at its end), after one scalar read per epoch instead of one per
batch. Under XLA with several replicas (multi-GPU) the in-step checks are
skipped."""

import contextvars
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_distill._keras import keras
from keras_distill.callbacks import StopOnNonFinite
from keras_distill.teachers import cache as cache_lib
from keras_distill.teachers.top_k import TopKLogits

_ONE_VALUE = ("loss", "gradients")
_EVALUATION = "an evaluation batch"
_TRAINING_STEP = "training step {}"
# Numbers a check can report: its row, its value, the number of classes and the last class.
_MAX_FIELDS = 4
_REPORTING = contextvars.ContextVar("keras_distill_reporting", default=False)
_ALL_KINDS = ("labels", "finite")


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
def label_finding(labels, logits, mask_value, num_classes=None):
    """Sparse `labels` are whole class indices in range (or `mask_value`); `None` for one-hot.

    Args:
        labels: The batch's labels (a tensor).
        logits: The teacher's logits `(batch, num_classes)` (or its top-k
            values `(batch, k)`, with `num_classes`).
        mask_value: The missing-label value, always allowed.
        num_classes: The number of classes, when `logits` are not full rows.
            Defaults to `None` (the logits' last dimension).
    """
    if not is_sparse(labels, logits) or not (labels.dtype.is_integer or labels.dtype.is_floating):
        return None
    raw = tf.reshape(labels, [-1])  # Row `i` of a batch with positions is its `i`-th position.
    if num_classes is None:
        num_classes = tf.shape(logits)[-1]
    num_classes = tf.convert_to_tensor(num_classes, tf.int32)
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
            in_row = "" if one_value else " in row {row}"
            template = (
                f"{description} is NaN or Inf in {{where}}{at_row}. Training stopped before "
                "this batch changed any weight. Remove or fix the bad rows (lower the learning "
                "rate if the loss overflows), or pass `compile(data_checks=False)` to skip these "
                f"checks. Received: {argument} with a non-finite value{in_row}"
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


class StepChecks:
    """The checks of every batch of one `Distiller`, and the record of a run's first failure.

    Args:
        label_mask_value: The missing-label value, always allowed.
        padding_mask_input: The name of the padding mask input, checked to
            hold values in [0, 1], or `None`.
        teacher_from_logits: `False` when the teacher is declared to return
            probabilities (checked to sum to 1).
    """

    def __init__(self, label_mask_value, padding_mask_input, teacher_from_logits):
        self.label_mask_value = label_mask_value
        self.padding_mask_input = padding_mask_input
        self.teacher_from_logits = teacher_from_logits
        self.enabled = True
        self.kinds = _ALL_KINDS
        # Created under the strategy scope the Distiller is built in.
        self.record = Record()

    def choose(self, callbacks):
        """Chooses the checks for the next `fit`; True when the choice changed.

        Finiteness is left to a `StopOnNonFinite` callback when one is given
        (it stops and restores weights itself).
        """
        kinds = _ALL_KINDS if self.enabled else ()
        if any(isinstance(callback, StopOnNonFinite) for callback in callbacks or []):
            kinds = tuple(kind for kind in kinds if kind != "finite")
        changed = kinds != self.kinds
        self.kinds = kinds
        return changed

    def active_kinds(self, model):
        """The chosen checks, or none under XLA with several replicas.

        There the optimizer synchronises the replicas, which a conditional
        update in each replica cannot hold.
        """
        if _is_xla(model) and model.distribute_strategy.num_replicas_in_sync > 1:
            return ()
        return self.kinds

    def guard(self, model, training):
        """The `StepGuard` of one train (`training=True`) or test step of `model`."""
        return StepGuard(self, model, training)

    def reporting(self, model, position=None):
        """A context manager that turns a failed check inside `fit`/`evaluate` of `model` into a
        `ValueError` (see `Reporting`).

        Args:
            model: The `Distiller`.
            position: The fit's `Position` callback, to name the epoch and batch.
        """
        return Reporting(self, model, position)

    def raise_recorded(self, model, position=None, inside_fit=False):
        """Raises the `ValueError` of the run's recorded failure, if any, and resets the record.

        `inside_fit`: raised from a callback, through Keras's frames (`Reporting` raises it
        again from outside them).
        """
        failure = self.record.failure(model.distribute_strategy)
        if failure is None:
            return
        self.record.reset()
        where = position.where(failure) if position is not None else _plain_where(failure)
        raise (_FailureInFit if inside_fit else ValueError)(failure.message(where)) from None


class _FailureInFit(ValueError):
    """A recorded failure raised inside `fit` by `Position`; `Reporting` turns it into a plain
    `ValueError` raised outside Keras's frames."""


class Reporting:
    """Around `fit`/`evaluate`: raises the run's recorded failure as a `ValueError`.

    The failed step's `InvalidArgumentError` becomes the `ValueError`'s context without its
    traceback, and no frame of this context manager keeps it: the error then holds no frame
    of the failed `fit` (its data iterator, whose destruction waits for the iterator's
    threads, would otherwise live as long as anyone holds the error).
    """

    def __init__(self, checks, model, position):
        self.checks, self.model, self.position = checks, model, position

    def __enter__(self):
        self.outermost = not _REPORTING.get()
        self.token = _REPORTING.set(True)
        if self.outermost:  # `fit` reports what its validation finds.
            self.checks.record.reset()
        return self

    def __exit__(self, kind, error, traceback):
        _REPORTING.reset(self.token)
        if not self.outermost:
            return False
        if isinstance(error, _FailureInFit):  # Raised by `Position` through Keras's frames.
            message = str(error)
            error.__traceback__ = None
            del kind, error, traceback
            raise ValueError(message) from None
        failed_step = isinstance(error, tf.errors.InvalidArgumentError)
        if error is not None and not failed_step:
            return False
        if failed_step:
            if self.checks.record.failure(self.model.distribute_strategy) is None:
                return False
            error.__traceback__ = None
        del kind, error, traceback
        self.checks.raise_recorded(self.model, self.position)
        return False


class StepGuard:
    """The checks of one train or test step, in the mode its compilation allows.

    Graph and eager mode: a failure is recorded, then an assertion stops the
    step before the weights change. XLA: the failure is recorded, and the
    update runs only while no batch of the run has failed.

    Args:
        checks: The Distiller's `StepChecks`.
        model: The `Distiller`: `jit_compile`, optimizer, strategy.
        training: Whether this is a training step.
    """

    def __init__(self, checks, model, training):
        self.checks, self.model, self.training = checks, model, training
        self.kinds = checks.active_kinds(model)
        self.xla = bool(self.kinds) and _is_xla(model)
        self.findings = []

    @_plain_python
    def labels(self, y, teacher_logits):
        """`y`, checked when sparse (before the loss: cross-entropy raises vaguer errors)."""
        if "labels" not in self.kinds or y is None or isinstance(y, (dict, list, tuple)):
            return y
        labels = tf.convert_to_tensor(y)
        logits, num_classes = teacher_logits, None
        if isinstance(teacher_logits, TopKLogits):
            logits, num_classes = teacher_logits.values, teacher_logits.num_classes
        finding = label_finding(labels, logits, self.checks.label_mask_value, num_classes)
        return self._checked([finding] if finding else [], labels)

    @_plain_python
    def values(self, data, teacher_logits, loss, values, gradients=()):
        """`values` once the batch `data`, the teacher's outputs, `loss` and `gradients` passed.

        With the `"labels"` kind: a teacher declared to return probabilities
        does, and a padding mask holds values in [0, 1]. With `"finite"`:
        `x`, the sample weights, the teacher's logits, the loss and the
        `gradients` are finite. Gradients are not checked when the optimizer
        scales the loss (mixed precision), which skips non-finite steps itself.
        """
        if not self.kinds:
            return values
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        cached = cache_lib.is_cached_batch(x)
        x = x[cache_lib.INPUTS_KEY] if cached else x
        findings = []
        if "labels" in self.kinds:
            if self.checks.teacher_from_logits is False and not cached:
                findings.append(probability_finding(teacher_logits))
            mask_input = self.checks.padding_mask_input
            if isinstance(x, dict) and mask_input in x:
                findings.append(mask_finding(x[mask_input], mask_input))
        if "finite" in self.kinds:
            findings += finite_findings(self._finite_values(x, sample_weight, teacher_logits, loss))
            findings += self._gradient_findings(gradients)
        return self._checked(findings, values)

    @_plain_python
    def update(self, apply, gradients):
        """Runs `apply(gradients)` (the optimizer step); under XLA only while no batch failed."""
        if not self.xla:
            apply(gradients)
            return
        passed = self._record(self.findings)

        def run(values):
            apply(values)
            return tf.constant(True)

        tf.cond(passed, lambda: run(gradients), lambda: tf.constant(False))

    @_plain_python
    def finish(self):
        """Ends a test step: under XLA, records its findings; counts evaluation batches."""
        if self.xla:
            self._record(self.findings)
        if not self.training and self.kinds:
            self.checks.record.test_batches.assign_add(1)

    def _finite_values(self, x, sample_weight, teacher_logits, loss):
        if isinstance(teacher_logits, TopKLogits):  # Renormalised: the kept logits only.
            teacher_logits = teacher_logits.values
        return [
            ("`x`", "x", x),
            ("`sample_weight`", "sample_weight", sample_weight),
            ("The teacher's output", "teacher outputs", teacher_logits),
            ("The loss (its inputs are finite, so it overflowed)", "loss", tf.reshape(loss, [1])),
        ]

    def _gradient_findings(self, gradients):
        gradients = [g for g in gradients if g is not None]
        if not gradients or _scales_loss(self.model.optimizer):
            return []
        parts = [g.values if isinstance(g, tf.IndexedSlices) else g for g in gradients]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in parts])
        description = "A gradient (the loss is finite, but its gradient overflowed)"
        return finite_findings([(description, "gradients", tf.where(finite, 0.0, np.nan)[None])])

    def _checked(self, findings, values):
        if self.xla:
            self.findings += findings
            return values
        if not findings:
            return values
        passed = self._record(findings)
        check = tf.debugging.Assert(passed, ["keras_distill: a data check failed"], summarize=1)
        return after([check], values)

    def _record(self, findings):
        """Writes the first failure among `findings` if the run has none yet; True while none."""
        record = self.checks.record
        clean = tf.equal(record.kind, 0)
        if not findings:
            return clean
        oks = tf.stack([finding.ok for finding in findings])
        passed = tf.reduce_all(oks)
        first = tf.argmin(tf.cast(oks, tf.int32), output_type=tf.int32)
        kinds = tf.constant([record.kind_of(finding) for finding in findings], tf.int32)
        fields = tf.stack([record.numbers(finding) for finding in findings])
        step = self.model.optimizer.iterations if self.training else -1
        new = tf.logical_and(clean, tf.logical_not(passed))
        writes = record.write(new, tf.gather(kinds, first), tf.gather(fields, first), step)
        with tf.control_dependencies(writes):
            return tf.logical_and(passed, clean)


class Failure(NamedTuple):
    """A recorded failure: its template, its fields (Python text), and where it happened.

    Attributes:
        template: The message with `{where}` and field names.
        texts: `{field name: text}`.
        step: The training step, or `None` for an evaluation batch.
        test_batch: The index of the evaluation batch (training: `None`).
    """

    template: str
    texts: dict
    step: "int | None"
    test_batch: "int | None"

    def message(self, where):
        return self.template.format(where=where, **self.texts)


class Record:
    """The first failed check of a `fit` or `evaluate`, in variables the step can write.

    `kind` is 0 while every check passed, else the index (from 1) of the
    failed check's template; `values` are its fields; `step` the training
    step (-1: an evaluation batch, `test_batch` its index). Each replica
    keeps its own copy (synchronised on read). Kept out of the model's
    tracked weights.
    """

    def __init__(self):
        self.templates = []
        self.kind = _replica_variable(0, tf.int32, "failed_check")
        self.values = _replica_variable(tf.zeros([_MAX_FIELDS], tf.float64), None, "failed_values")
        self.step = _replica_variable(0, tf.int64, "failed_step")
        self.test_batch = _replica_variable(0, tf.int64, "failed_batch")
        self.test_batches = _replica_variable(0, tf.int64, "test_batches")

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
        """Writes a failure where `new` is true; returns the write operations."""
        return [
            self.kind.assign(tf.where(new, kind, self.kind)),
            self.values.assign(tf.where(new, values, self.values)),
            self.step.assign(tf.where(new, tf.cast(step, tf.int64), self.step)),
            self.test_batch.assign(tf.where(new, self.test_batches, self.test_batch)),
        ]

    def reset(self):
        for variable in (self.kind, self.step, self.test_batch, self.test_batches):
            variable.assign(tf.zeros_like(variable))

    def failure(self, strategy):
        """The first replica's recorded `Failure`, or `None` while every check passed."""
        local = strategy.experimental_local_results
        replicas = zip(*(local(v) for v in (self.kind, self.values, self.step, self.test_batch)))
        for kind, values, step, test_batch in replicas:
            kind = int(kind.numpy())
            if kind == 0:
                continue
            template, types = self.templates[kind - 1]
            numbers = dict(zip((name for name, _ in types), values.numpy()))
            texts = {name: _python_text(numbers[name], dtype) for name, dtype in types}
            step = int(step.numpy())
            evaluation = step < 0
            return Failure(
                template,
                texts,
                None if evaluation else step,
                int(test_batch.numpy()) if evaluation else None,
            )
        return None


def _replica_variable(initial_value, dtype, name):
    """A non-trainable variable with one copy per replica (a plain variable on one device)."""
    return tf.Variable(
        initial_value,
        dtype=dtype,
        trainable=False,
        name=name,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


def _plain_where(failure):
    """Words for the failure's position without a fit: the training step, or an evaluation."""
    return _EVALUATION if failure.step is None else _TRAINING_STEP.format(failure.step)


class Position(keras.callbacks.Callback):
    """Remembers the epoch and the optimizer's step count at its start, to name batches.

    Args:
        checks: The Distiller's `StepChecks`; under XLA a recorded failure is
            raised at the end of the epoch.
    """

    def __init__(self, checks):
        super().__init__()
        self.checks = checks
        self.epoch = None
        self.first_step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.first_step = int(self.model.optimizer.iterations.numpy())

    def on_test_begin(self, logs=None):
        self.checks.record.test_batches.assign(0)

    def on_epoch_end(self, epoch, logs=None):
        self.checks.raise_recorded(self.model, self, inside_fit=True)

    def where(self, failure):
        """Words for the failure's position: epoch, batch and step, or the validation batch."""
        if self.epoch is None:
            return _plain_where(failure)
        if failure.step is None:
            return f"validation batch {failure.test_batch} (`validation_data`, epoch {self.epoch})"
        batch = failure.step - self.first_step
        return f"epoch {self.epoch}, batch {batch} (training step {failure.step})"


def fit_callbacks(checks, callbacks):
    """Chooses the checks for a `fit` with `callbacks`; returns its callbacks and `Position`.

    Returns:
        `(callbacks, position, retrace)`: the callbacks with a `Position`
        first (so that a failure recorded under XLA stops the run before
        other callbacks see it), the `Position` (`None` when `callbacks` is
        not a list), and whether the steps must be traced again.
    """
    is_list = callbacks is None or isinstance(callbacks, (list, tuple))
    retrace = checks.choose(list(callbacks or []) if is_list else [])
    if not is_list:
        return callbacks, None, retrace
    position = Position(checks)
    return [position] + list(callbacks or []), position, retrace


def _is_xla(model):
    return getattr(model, "jit_compile", False) is True


def _scales_loss(optimizer):
    """True for a mixed-precision `LossScaleOptimizer` (it skips non-finite steps itself)."""
    return "LossScaleOptimizer" in [cls.__name__ for cls in type(optimizer).__mro__]


def _python_text(number, dtype):
    """`number` (recorded as float64) in the shortest exact form of `dtype` ("1.7", "7")."""
    if dtype.startswith(("int", "uint")):
        return str(int(number))
    text = str(getattr(np, dtype, np.float64)(number))
    return text[:-2] if text.endswith(".0") else text
