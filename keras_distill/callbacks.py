"""`StopOnNonFinite`: stops `fit()` at the first NaN or Inf loss and keeps the last good weights."""

import math
import sys

import numpy as np

from keras_distill._checks import check_choice
from keras_distill._keras import keras


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first non-finite loss component and restores good weights.

    After every training batch the callback reads the batch logs (`loss`,
    `student_loss`, `distillation_loss`, each match's loss, and anything else
    named in `monitor`). When one is NaN or Inf it stops training, names the
    component(s), the epoch and the batch, and restores the student's weights
    (and the matches' adapters, if any) as they were at the end of the last
    good batch (before the first batch, if it was the first).

    Keras logs running means over the epoch, so the first batch whose loss is
    not finite makes the logged mean non-finite at that very batch. With
    `steps_per_execution=k`, batches are seen in groups of `k`, and the
    restored weights are those at the end of the last good group.

    Cost: a copy of the student's weights is kept in host memory (one extra
    copy of the student's parameters) and refreshed after every good batch,
    a device-to-host copy per step. That is negligible for the small students
    this library targets; for large ones, pass `restore="epoch"` to copy
    once per epoch instead (then the good batches of the failing epoch are
    lost), or `restore=None` to keep no copy.

    The optimizer state is not restored: training stops, and the weights
    are what matters. Validation logs are not checked.

    Attributes:
        stopped_epoch: Epoch (0-based) of the failure, else `None`.
        stopped_batch: Batch (0-based, within the epoch), else `None`.
        non_finite: `{name: value}` of the non-finite components.
        message: The one-line report, else `None`.

    Args:
        monitor: Names of the logs to check. Defaults to `None` (every
            numeric entry of the batch logs).
        restore: `"batch"`, `"epoch"` or `None`: when to copy the good
            weights. Defaults to `"batch"`.
        verbose: Print the report to stderr. Defaults to `True`.

    Example:
        ```python
        guard = StopOnNonFinite()
        distiller.fit(x, y, epochs=10, callbacks=[guard])
        if guard.message:
            print(guard.message)
        ```
    """

    RESTORE_MODES = ("batch", "epoch", None)

    def __init__(self, monitor=None, restore="batch", verbose=True):
        super().__init__()
        check_choice("restore", restore, self.RESTORE_MODES)
        if monitor is not None and (
            isinstance(monitor, str) or not all(isinstance(name, str) for name in monitor)
        ):
            raise ValueError(
                f"`monitor` must be a list of log names or None. Received: monitor={monitor!r}"
            )
        self.monitor = None if monitor is None else list(monitor)
        self.restore = restore
        self.verbose = verbose
        self._good = None
        self._good_at = None
        self._epoch = 0
        self.stopped_epoch = None
        self.stopped_batch = None
        self.non_finite = {}
        self.message = None

    def on_train_begin(self, logs=None):
        self.stopped_epoch = self.stopped_batch = self.message = None
        self.non_finite = {}
        if self.restore is not None:
            self._keep("the weights before training")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = self._non_finite(logs or {})
        if not bad:
            if self.restore == "batch":
                self._keep(f"the end of epoch {self._epoch}, batch {batch}")
            return
        self.stopped_epoch, self.stopped_batch, self.non_finite = self._epoch, batch, bad
        self.model.stop_training = True
        values = ", ".join(f"{name}={value}" for name, value in bad.items())
        if self._good is not None:
            self._set_weights(self._good)
            outcome = f"weights restored to {self._good_at}"
        else:
            outcome = "weights not restored (restore=None)"
        self.message = (
            f"Non-finite loss at epoch {self._epoch}, batch {batch}: {values}. "
            f"Training stopped; {outcome}."
        )
        if self.verbose:
            print(self.message, file=sys.stderr)

    def on_epoch_end(self, epoch, logs=None):
        if self.restore == "epoch" and self.stopped_epoch is None:
            self._keep(f"the end of epoch {epoch}")

    def _non_finite(self, logs):
        names = self.monitor if self.monitor is not None else list(logs)
        # The components first, then their sum `loss`.
        names = sorted(names, key=lambda name: name == "loss")
        bad = {}
        for name in names:
            if name not in logs:
                continue
            try:
                value = float(np.asarray(logs[name]))
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                bad[name] = value
        return bad

    def _variables(self):
        model = self.model
        variables = list(getattr(model, "student", model).weights)
        for adapter in (getattr(model, "adapters", None) or {}).values():
            variables += list(adapter.weights)
        return variables

    def _keep(self, when):
        self._good = [np.array(variable.numpy(), copy=True) for variable in self._variables()]
        self._good_at = when

    def _set_weights(self, values):
        for variable, value in zip(self._variables(), values):
            variable.assign(value)
