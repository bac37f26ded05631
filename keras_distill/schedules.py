"""Per-epoch schedules of the distillation temperature and alpha, as a Keras callback.

`Distiller.alpha` and `Distiller.temperature` are backed by non-trainable
variables, so assigning them between epochs takes effect without retracing
the train step.
"""

import math

from keras_distill._checks import check_int
from keras_distill._keras import keras


class _Schedule:
    """A callable `epoch -> value` (epoch counted from 0) with a readable `repr`."""

    def __init__(self, kind, function, **config):
        self.kind = kind
        self.config = config
        self._function = function

    def __call__(self, epoch):
        return float(self._function(int(epoch)))

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{self.kind}({arguments})"


def constant(value):
    """The same value every epoch."""
    return _Schedule("constant", lambda epoch: value, value=value)


def linear(start, end, epochs):
    """Straight line from `start` (epoch 0) to `end` (epoch `epochs - 1`), then `end`.

    Args:
        start: Value at the first epoch.
        end: Value from epoch `epochs - 1` on.
        epochs: Length of the ramp in epochs.

    Example:
        ```python
        linear(8.0, 2.0, epochs=10)(0), linear(8.0, 2.0, epochs=10)(9)  # 8.0, 2.0
        ```
    """
    epochs = check_int("epochs", epochs)

    def value(epoch):
        fraction = 1.0 if epochs == 1 else min(epoch / (epochs - 1), 1.0)
        return start + (end - start) * fraction

    return _Schedule("linear", value, start=start, end=end, epochs=epochs)


def cosine(start, end, epochs):
    """Half-cosine from `start` (epoch 0) to `end` (epoch `epochs - 1`), then `end`.

    `value(e) = end + (start - end) * (1 + cos(pi * e / (epochs - 1))) / 2`.

    References:
        Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
        Restarts", 2017 (the cosine shape). https://arxiv.org/abs/1608.03983
    """
    epochs = check_int("epochs", epochs)

    def value(epoch):
        fraction = 1.0 if epochs == 1 else min(epoch / (epochs - 1), 1.0)
        return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0

    return _Schedule("cosine", value, start=start, end=end, epochs=epochs)


def piecewise(boundaries, values):
    """`values[i]` for `boundaries[i-1] <= epoch < boundaries[i]` (Keras' PiecewiseConstantDecay).

    Args:
        boundaries: Increasing epoch numbers, one fewer than `values`.
        values: The values between the boundaries.

    Example:
        ```python
        piecewise([5, 10], [4.0, 2.0, 1.0])  # T=4 for epochs 0-4, 2 for 5-9, then 1
        ```
    """
    boundaries, values = list(boundaries), list(values)
    if len(values) != len(boundaries) + 1 or boundaries != sorted(boundaries):
        raise ValueError(
            "`values` must have one more element than `boundaries`, and `boundaries` must "
            f"increase. Received: boundaries={boundaries}, values={values}"
        )

    def value(epoch):
        return values[sum(1 for boundary in boundaries if epoch >= boundary)]

    return _Schedule("piecewise", value, boundaries=boundaries, values=values)


PRESETS = {"constant": constant, "linear": linear, "cosine": cosine, "piecewise": piecewise}


class DistillationScheduler(keras.callbacks.Callback):
    """Sets `temperature` and/or `alpha` of a `Distiller` at the start of every epoch.

    Each schedule is a callable `epoch -> value` (epochs counted from 0, as in
    `keras.callbacks.LearningRateScheduler`): one of the presets `constant`,
    `linear`, `cosine`, `piecewise` of this module, or any function. The values
    are checked by the Distiller (`0 <= alpha <= 1`, `T > 0`). The values
    used in each epoch are added to the epoch's logs (so `fit()`'s History has
    `temperature` and `alpha` series) and kept in `self.values`.

    Annealing the temperature from high to low (e.g. `linear(8.0, 1.0, ...)`)
    gives softer targets early and sharper ones late. In `docs/quality.md`
    (MNIST-1D and digits, 5 seeds) it was no better than a constant `T=2`;
    warm-ups of `alpha` are another use.

    Args:
        temperature: Schedule of `T`. Defaults to `None` (leave it).
        alpha: Schedule of `alpha`. Defaults to `None` (leave it).
        verbose: `1` prints the values at each epoch. Defaults to `0`.

    Example:
        ```python
        from keras_distill import schedules
        scheduler = schedules.DistillationScheduler(
            temperature=schedules.linear(8.0, 2.0, epochs=20),
            alpha=lambda epoch: 0.5 if epoch < 5 else 0.9)
        distiller.fit(x, y, epochs=20, callbacks=[scheduler])
        ```

    References:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
        Network", 2015. https://arxiv.org/abs/1503.02531
    """

    def __init__(self, temperature=None, alpha=None, verbose=0):
        super().__init__()
        for name, schedule in (("temperature", temperature), ("alpha", alpha)):
            if schedule is not None and not callable(schedule):
                raise ValueError(
                    f"`{name}` must be a callable epoch -> value (e.g. "
                    f"`schedules.linear(...)`) or None. Received: {name}={schedule!r}"
                )
        if temperature is None and alpha is None:
            raise ValueError(
                "Give a schedule for `temperature`, `alpha`, or both. "
                "Received: temperature=None, alpha=None"
            )
        self.temperature = temperature
        self.alpha = alpha
        self.verbose = verbose
        self.values = {"epoch": [], "temperature": [], "alpha": []}

    def _schedules(self):
        return [
            (name, schedule)
            for name, schedule in (("temperature", self.temperature), ("alpha", self.alpha))
            if schedule is not None
        ]

    def on_train_begin(self, logs=None):
        for name, _ in self._schedules():
            if not hasattr(self.model, name):
                raise ValueError(
                    f"DistillationScheduler sets `{name}` of the model it trains: use it with "
                    f"a Distiller. Received: model={type(self.model).__name__}"
                )

    def on_epoch_begin(self, epoch, logs=None):
        self.values["epoch"].append(int(epoch))
        for name, schedule in self._schedules():
            setattr(self.model, name, float(schedule(epoch)))
        for name in ("temperature", "alpha"):
            self.values[name].append(getattr(self.model, name, None))
        if self.verbose:
            print(
                f"Epoch {epoch + 1}: temperature={self.model.temperature:.4g}, "
                f"alpha={self.model.alpha:.4g}"
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["temperature"] = self.model.temperature
            logs["alpha"] = self.model.alpha
