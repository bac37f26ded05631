"""Sparsity schedules of magnitude pruning: when the masks change, and to what sparsity.

They mirror `tfmot.sparsity.keras.PolynomialDecay` and `ConstantSparsity`
(same arguments, same steps), so a schedule moves between generations by
changing the import.
"""

import numbers

from keras_distill._checks import check_int


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1). Received: {name}={value!r}")
    return float(value)


def _check_steps(begin_step, end_step):
    if (
        isinstance(begin_step, bool)
        or not isinstance(begin_step, numbers.Integral)
        or begin_step < 0
    ):
        raise ValueError(
            f"`begin_step` must be an integer >= 0. Received: begin_step={begin_step!r}"
        )
    if (
        isinstance(end_step, bool)
        or not isinstance(end_step, numbers.Integral)
        or (end_step != -1 and end_step < begin_step)
    ):
        raise ValueError(
            "`end_step` must be an integer >= `begin_step`, or -1 (no end). "
            f"Received: end_step={end_step!r}, begin_step={begin_step!r}"
        )
    return int(begin_step), int(end_step)


class PolynomialDecay:
    """Sparsity rising as a polynomial from `initial_sparsity` to `final_sparsity`.

    At step `t` (masks change when `t - begin_step` is a multiple of
    `frequency`, and `begin_step <= t <= end_step`):

        p = clip((t - begin_step) / (end_step - begin_step), 0, 1)
        s(t) = final + (initial - final) * (1 - p) ** power

    Args:
        initial_sparsity: Sparsity at `begin_step`, in `[0, 1)`.
        final_sparsity: Sparsity from `end_step` on, in `[0, 1)`.
        begin_step: First step that updates the masks.
        end_step: Last step that updates the masks.
        power: Exponent of the polynomial. Defaults to `3`.
        frequency: Steps between mask updates. Defaults to `100`.

    Example:
        ```python
        schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=700, frequency=35)
        schedule(700)  # (True, 0.8)
        ```

    References:
        Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of
        pruning for model compression", 2017. https://arxiv.org/abs/1710.01878
    """

    def __init__(
        self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100
    ):
        self.initial_sparsity = _check_fraction("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_fraction("final_sparsity", final_sparsity)
        self.begin_step, self.end_step = _check_steps(begin_step, end_step)
        if self.end_step == -1 or self.end_step == self.begin_step:
            raise ValueError(
                "`end_step` must be greater than `begin_step` for a polynomial schedule. "
                f"Received: end_step={end_step!r}, begin_step={begin_step!r}"
            )
        if isinstance(power, bool) or not isinstance(power, numbers.Real) or power <= 0:
            raise ValueError(f"`power` must be a number > 0. Received: power={power!r}")
        self.power = power
        self.frequency = check_int("frequency", frequency)

    def __call__(self, step):
        """`(update, sparsity)`: whether the masks change at `step`, and the target then."""
        progress = min(1.0, max(0.0, (step - self.begin_step) / (self.end_step - self.begin_step)))
        sparsity = (
            self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power
        )
        return _is_update_step(step, self.begin_step, self.end_step, self.frequency), sparsity

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


class ConstantSparsity:
    """The same sparsity, `target_sparsity`, at every mask update.

    Masks change at steps `t` with `begin_step <= t <= end_step` (no end
    when `end_step=-1`) and `(t - begin_step) % frequency == 0`.

    Args:
        target_sparsity: Fraction of zeros in each pruned kernel, in `[0, 1)`.
        begin_step: First step that updates the masks.
        end_step: Last step that updates the masks, or `-1`. Defaults to `-1`.
        frequency: Steps between mask updates. Defaults to `100`.

    Example:
        ```python
        schedule = ConstantSparsity(0.5, begin_step=0, frequency=10)
        schedule(20)  # (True, 0.5)
        ```

    References:
        Han et al., "Learning both Weights and Connections for Efficient
        Neural Networks", 2015. https://arxiv.org/abs/1506.02626
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = _check_fraction("target_sparsity", target_sparsity)
        self.begin_step, self.end_step = _check_steps(begin_step, end_step)
        self.frequency = check_int("frequency", frequency)

    def __call__(self, step):
        """`(update, sparsity)`: whether the masks change at `step`, and the target then."""
        update = _is_update_step(step, self.begin_step, self.end_step, self.frequency)
        return update, self.target_sparsity

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


def _is_update_step(step, begin_step, end_step, frequency):
    in_range = step >= begin_step and (end_step == -1 or step <= end_step)
    return in_range and (step - begin_step) % frequency == 0
