"""Distillation-aware magnitude pruning: tfmot on tf_keras, this package's own on Keras 3."""

import numpy as np

from keras_distill._checks import check_choice
from keras_distill._checks import check_int
from keras_distill._checks import check_model
from keras_distill._checks import check_number
from keras_distill._clone import clone_with_weights
from keras_distill._keras import GENERATION
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import all_layers
from keras_distill._keras import keras
from keras_distill._options import TrainingOptions
from keras_distill.compression import _training
from keras_distill.compression._tfmot import import_tfmot

SCOPES = ("layer", "global")
BLOCK_SIZES = ((1, 1), (1, 4), (4, 1))


def prune(
    student,
    x,
    y=None,
    teacher=None,
    target_sparsity=0.8,
    epochs=2,
    batch_size=32,
    optimizer=None,
    alpha=0.5,
    temperature=4.0,
    end_fraction=0.7,
    frequency=None,
    pruning_schedule=None,
    callbacks=None,
    validation_data=None,
    verbose=0,
    block_size=(1, 1),
    scope="layer",
):
    """Prunes a copy of `student` to `target_sparsity` while it learns from `teacher`.

    The copy is trained with the `Distiller` (the teacher's soft targets
    guide the recovery), or with plain cross-entropy when `teacher` is
    `None`, while magnitude masks zero its smallest kernel weights. The
    generation decides the implementation:
    - tf_keras: the copy is wrapped with
      `tfmot.sparsity.keras.prune_low_magnitude`, the `UpdatePruningStep`
      callback is added for you, and `strip_pruning` removes the wrappers.
    - Keras 3: no wrappers. Each pruned kernel gets a mask variable, read by
      a kernel constraint that the optimizer applies right after every
      update, so pruned weights stay exactly zero through Adam's steps; a
      callback recomputes the masks at the schedule's steps
      (`keras_distill.compression.keras3`). Pruned kernels: Dense,
      EinsumDense, Conv1D/2D/3D, the depthwise kernel of DepthwiseConv1D/2D
      and the pointwise kernel of SeparableConv1D/2D, in Sequential,
      Functional and nested models.

    The kept weights of a kernel of `n` are the `max(round(n * (1 - s)), 1)`
    of largest magnitude at sparsity `s`. By default the sparsity
    rises as a polynomial from 0 to `target_sparsity` over the first
    `end_fraction` of the training steps, updating the masks every
    `frequency` steps; the last mask update falls on the schedule's end
    step, so every pruned kernel ends with exactly
    `1 - round(n * (1 - target_sparsity)) / n` of its `n` weights at zero.
    The rest of the training recovers at that sparsity. The result is a
    plain Keras model; `student` is not modified.

    Args:
        student: Built `keras.Model` (logits out).
        x: Training inputs: an array, or a finite, batched `tf.data.Dataset`
            of `(x, y)` (then `y` is `None`).
        y: Integer labels for array `x`. Defaults to `None`.
        teacher: Trained `keras.Model` to distil from. Defaults to `None`
            (train on labels alone).
        target_sparsity: Final fraction of zeros in each pruned kernel, in
            `[0, 1)`. Defaults to `0.8`.
        epochs: Training epochs. Defaults to `2`.
        batch_size: Batch size for array inputs. Defaults to `32`.
        optimizer: Keras optimizer. Defaults to `Adam(1e-3)`.
        alpha: Distiller weight of the distillation term. Defaults to `0.5`.
        temperature: Distiller temperature. Defaults to `4.0`.
        end_fraction: Fraction of the steps over which sparsity rises.
            Defaults to `0.7`.
        frequency: Steps between mask updates. Defaults to 1/20 of the steps.
        pruning_schedule: A schedule that replaces the default one (then
            `target_sparsity` is not used): on tf_keras a
            `tfmot.sparsity.keras.PruningSchedule`, on Keras 3 a
            `keras_distill.compression.keras3.PolynomialDecay` or
            `ConstantSparsity`. Defaults to `None`.
        callbacks: More Keras callbacks. Defaults to none.
        validation_data: As for `fit()`. Defaults to `None`.
        verbose: As for `fit()`. Defaults to `0`.
        block_size: `(rows, cols)` blocks of weights pruned together, one of
            `(1, 1)`, `(1, 4)`, `(4, 1)`; the block's mean |w| decides. On
            tf_keras, tfmot applies it to 2-D kernels (Dense) only.
            Defaults to `(1, 1)`.
        scope: `"layer"`: each kernel at the sparsity; `"global"` (Keras 3
            only): one magnitude threshold over all pruned kernels, so the
            model as a whole has the sparsity. Defaults to `"layer"`.

    Returns:
        A new, stripped `keras.Model` with sparse kernels.

    Example:
        ```python
        sparse = prune(student, x_train, y_train, teacher=teacher,
                       target_sparsity=0.8, epochs=4)
        weight_sparsity(sparse)["total"]  # 0.8
        ```

    References:
        Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of
        pruning for model compression", 2017. https://arxiv.org/abs/1710.01878
    """
    check_model("student", student)
    options = TrainingOptions(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        alpha=alpha,
        temperature=temperature,
        callbacks=callbacks,
        validation_data=validation_data,
        verbose=verbose,
    )
    return prune_with_options(
        student,
        x,
        y,
        teacher,
        options,
        target_sparsity=target_sparsity,
        end_fraction=end_fraction,
        frequency=frequency,
        pruning_schedule=pruning_schedule,
        block_size=block_size,
        scope=scope,
    )


def prune_with_options(
    student,
    x,
    y,
    teacher,
    options,
    target_sparsity=0.8,
    end_fraction=0.7,
    frequency=None,
    pruning_schedule=None,
    block_size=(1, 1),
    scope="layer",
):
    """`prune` with its training options as one `TrainingOptions` (used by `compress`)."""
    block_size = check_prune_settings(target_sparsity, end_fraction, block_size, scope)
    total_steps = _training.steps_per_epoch(x, options.batch_size) * options.epochs
    if not IS_LEGACY:
        from keras_distill.compression.keras3 import schedules
        from keras_distill.compression.keras3.pruning import prune_keras3

        if pruning_schedule is None:
            pruning_schedule = default_schedule(
                schedules, target_sparsity, total_steps, end_fraction, frequency
            )
        elif not callable(pruning_schedule):
            raise ValueError(
                "`pruning_schedule` must be a `keras_distill.compression.keras3."
                "PolynomialDecay` or `ConstantSparsity` on Keras 3. "
                f"Received: pruning_schedule={pruning_schedule!r}"
            )
        return prune_keras3(
            student, x, y, teacher, pruning_schedule, options, block_size=block_size, scope=scope
        )
    tfmot = import_tfmot("prune")
    if pruning_schedule is None:
        pruning_schedule = default_schedule(
            tfmot.sparsity.keras, target_sparsity, total_steps, end_fraction, frequency
        )
    model = tfmot.sparsity.keras.prune_low_magnitude(
        clone_with_weights(student, "student"),
        pruning_schedule=pruning_schedule,
        block_size=block_size,
    )
    update = tfmot.sparsity.keras.UpdatePruningStep()
    _training.fit(model, x, y, teacher, options.replace(callbacks=(update, *options.callbacks)))
    return tfmot.sparsity.keras.strip_pruning(model)


def check_prune_settings(target_sparsity, end_fraction=0.7, block_size=(1, 1), scope="layer"):
    """Checks `prune`'s own settings (not the training options); returns `block_size` as a tuple.

    `compress` calls it before any stage trains, so a bad value is found at once.
    """
    check_number("target_sparsity", target_sparsity, minimum=0, maximum=1, open_maximum=True)
    check_number("end_fraction", end_fraction, minimum=0, maximum=1, open_minimum=True)
    block_size = tuple(block_size) if isinstance(block_size, list) else block_size
    check_choice("block_size", block_size, BLOCK_SIZES)
    check_choice("scope", scope, SCOPES)
    if scope == "global" and block_size != (1, 1):
        raise ValueError(
            "`scope='global'` ranks single weights over the whole model; it does not combine "
            "with blocks. Use block_size=(1, 1), or scope='layer' for blocks. "
            f"Received: block_size={block_size!r}, scope='global'"
        )
    if IS_LEGACY and scope != "layer":
        raise ValueError(
            "`scope='global'` is implemented for Keras 3 only (tfmot prunes each layer to "
            "the sparsity). Use scope='layer' on tf_keras. "
            f"Received: scope={scope!r}, GENERATION={GENERATION!r}"
        )
    return block_size


def default_schedule(schedules, target_sparsity, total_steps, end_fraction=0.7, frequency=None):
    """Polynomial 0 -> `target_sparsity`, ending on a mask update before the last step.

    `schedules` is the module holding `PolynomialDecay`: tfmot's
    `sparsity.keras` or `keras_distill.compression.keras3.schedules`.
    """
    end_step, frequency = schedule_steps(total_steps, end_fraction, frequency)
    return schedules.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=float(target_sparsity),
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )


def schedule_steps(total_steps, end_fraction=0.7, frequency=None):
    """`(end_step, frequency)` of the default schedule, or a `ValueError` when training is short.

    `frequency=None` is 1/20 of the steps; `end_step` is the last multiple of
    `frequency` within the first `end_fraction` of the steps.
    """
    if frequency is None:
        frequency = max(1, total_steps // 20)
    frequency = check_int("frequency", frequency)
    end_step = (int(end_fraction * total_steps) // frequency) * frequency
    if end_step < frequency or end_step > total_steps - 1:
        raise ValueError(
            "Training is too short for the pruning schedule: it needs at least one mask "
            "update before the last step. Train for more steps (epochs, smaller batch_size) "
            f"or lower `frequency`. Received: {total_steps} steps, frequency={frequency}"
        )
    return end_step, frequency


# Kernels `prune` leaves dense, by layer class, and why.
LEFT_DENSE = {
    "DepthwiseConv2D": (
        "tfmot's pruning registry lists no prunable weight for DepthwiseConv2D (its 3x3 "
        "per-channel kernels hold few weights and are sensitive to pruning), so prune() "
        "leaves it dense"
    ),
    "SeparableConv2D": (
        "tfmot's pruning registry prunes only the pointwise kernel of SeparableConv2D; its "
        "depthwise kernel stays dense, as in DepthwiseConv2D"
    ),
}
_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def weight_sparsity(model):
    """Fraction of exact zeros in the model's kernels, counted with NumPy.

    Args:
        model: A `keras.Model` (either generation).

    Returns:
        A dict:
        - `"total"`: zeros / size over all kernels;
        - `"weights"`: `{path: fraction}` for each kernel;
        - `"left_dense"`: `{path: reason}` for the kernels `prune` does not
          prune (DepthwiseConv2D's `depthwise_kernel`: tfmot leaves them dense);
        - `"pruned_total"`: zeros / size over the other kernels, the ones
          `prune` brings to its target.
        Biases and normalization statistics are not counted (they are not pruned).

    Example:
        ```python
        weight_sparsity(sparse_student)["total"]
        ```
    """
    per_weight, left_dense = {}, {}
    counts = {"all": [0, 0], "pruned": [0, 0]}
    for layer, weight in _kernels(model):
        name = getattr(weight, "path", None) or weight.name
        values = np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)
        per_weight[name] = float(np.mean(values == 0)) if values.size else 0.0
        groups = ["all"]
        if _left_dense(layer, name):
            left_dense[name] = LEFT_DENSE[type(layer).__name__]
        else:
            groups.append("pruned")
        for group in groups:
            counts[group][0] += int(np.sum(values == 0))
            counts[group][1] += int(values.size)
    zeros, size = counts["all"]
    pruned_zeros, pruned_size = counts["pruned"]
    return {
        "total": zeros / size if size else 0.0,
        "weights": per_weight,
        "left_dense": left_dense,
        "pruned_total": pruned_zeros / pruned_size if pruned_size else 0.0,
    }


def _short_name(path):
    return path.split("/")[-1].split(":")[0]


def _left_dense(layer, path):
    """Whether `prune` leaves this kernel dense (see `LEFT_DENSE`).

    On Keras 3 this package prunes DepthwiseConv2D kernels too; separable
    layers keep their depthwise part dense on both generations.
    """
    kind = type(layer).__name__
    if kind == "SeparableConv2D":
        return _short_name(path) == "depthwise_kernel"
    return IS_LEGACY and kind in LEFT_DENSE


def _kernels(model):
    """`(layer, weight)` for each kernel of `model`, nested models included, once each."""
    seen = set()
    for layer in all_layers(model, within_layers=False):
        if isinstance(layer, keras.Model):
            continue
        for weight in layer.weights:
            name = getattr(weight, "path", None) or weight.name
            if _short_name(name) in _KERNEL_NAMES and id(weight) not in seen:
                seen.add(id(weight))
                yield layer, weight


def expected_sparsity(size, target_sparsity):
    """The exact zero fraction tfmot leaves in a kernel of `size` weights."""
    kept = max(int(np.round(np.float32(size) * (np.float32(1.0) - np.float32(target_sparsity)))), 1)
    return 1 - kept / size if size else 0.0
