"""How a model trains: the `fit`-style options that the training stages share.

`compress()`, `distill()`, `prune()` and `quantization_aware_training()` keep
their Keras-style keyword arguments; each builds one `TrainingOptions` from
them, which checks every value once, and hands that object to the stages
and the fit loop instead of a long argument list.
"""

import dataclasses

from keras_distill import _checks
from keras_distill._keras import keras

VERBOSITIES = (0, 1, 2, "auto")


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingOptions:
    """The options of one training run, checked when the object is made.

    Args:
        epochs: Training epochs, an integer >= 1. Defaults to `1`.
        batch_size: Batch size for array inputs, an integer >= 1. Defaults
            to `32`.
        optimizer: A Keras optimizer (anything `compile` takes), or `None`
            for a new `Adam(learning_rate)` per run (`new_optimizer`).
            Defaults to `None`.
        learning_rate: Adam's learning rate when `optimizer` is `None`, a
            finite number > 0. Defaults to `1e-3`.
        alpha: Weight of the distillation term, in `[0, 1]`. Defaults to
            `0.5`.
        temperature: Softmax temperature, a finite number > 0. Defaults to
            `4.0`.
        callbacks: Keras callbacks (stored as a tuple). Defaults to none.
        validation_data: As for `fit()`. Defaults to `None`.
        verbose: As for `fit()`: `0`, `1`, `2` or `"auto"`. Defaults to `0`.
        seed: Random seed, an integer >= 0, or `None`. Defaults to `None`.
    """

    epochs: int = 1
    batch_size: int = 32
    optimizer: object = None
    learning_rate: float = 1e-3
    alpha: float = 0.5
    temperature: float = 4.0
    callbacks: tuple = ()
    validation_data: object = None
    verbose: object = 0
    seed: object = None

    def __post_init__(self):
        checked = {
            "epochs": _checks.check_int("epochs", self.epochs),
            "batch_size": _checks.check_int("batch_size", self.batch_size),
            "learning_rate": _checks.check_positive_number("learning_rate", self.learning_rate),
            "alpha": _checks.check_alpha(self.alpha),
            "temperature": _checks.check_temperature(self.temperature),
            "callbacks": _check_callbacks(self.callbacks),
            "verbose": _check_verbose(self.verbose),
        }
        if self.seed is not None:
            checked["seed"] = _checks.check_int("seed", self.seed, minimum=0)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes):
        """A copy with `changes` (checked again), e.g. `options.replace(epochs=3)`."""
        return dataclasses.replace(self, **changes)

    def new_optimizer(self):
        """`optimizer`, or a new `Adam(learning_rate)` when it is `None`."""
        if self.optimizer is not None:
            return self.optimizer
        return keras.optimizers.Adam(self.learning_rate)

    def fit_arguments(self, batched):
        """The keyword arguments of `fit()`; `batched`: the data is a batched dataset."""
        arguments = dict(
            epochs=self.epochs,
            callbacks=list(self.callbacks),
            validation_data=self.validation_data,
            verbose=self.verbose,
        )
        if not batched:
            arguments["batch_size"] = self.batch_size
        return arguments


def _check_callbacks(callbacks):
    if callbacks is None:
        return ()
    if isinstance(callbacks, keras.callbacks.Callback) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            f"`callbacks` must be a list of Keras callbacks. Received: callbacks={callbacks!r}"
        )
    return tuple(callbacks)


def _check_verbose(verbose):
    if isinstance(verbose, bool) or verbose not in VERBOSITIES:
        raise ValueError(
            f"`verbose` must be one of {list(VERBOSITIES)}. Received: verbose={verbose!r}"
        )
    return verbose
