"""Distillation-aware magnitude pruning on Keras 3: no wrapper layers, a plain model out."""

from keras_distill._clone import clone_with_weights
from keras_distill._keras import keras
from keras_distill.compression import _training
from keras_distill.compression.keras3.masks import Masks
from keras_distill.compression.keras3.masks import prunable_kernels


class UpdateMasks(keras.callbacks.Callback):
    """Updates the magnitude masks at the schedule's steps, before the step trains.

    At the start of training step `t`, `schedule(t)` returns `(update,
    sparsity)`; when `update`, every mask is recomputed from the kernels'
    magnitudes at `sparsity`. Between updates the masks stay fixed and the
    kernel constraints zero the pruned weights after every optimizer step.

    Args:
        masks: The `Masks` of the pruned kernels.
        schedule: A `PolynomialDecay` or `ConstantSparsity` (any callable
            `step -> (update, sparsity)`).
        block_size: Blocks pruned together. Defaults to `(1, 1)`.
        scope: `"layer"` (each kernel at the sparsity) or `"global"`.
            Defaults to `"layer"`.
    """

    def __init__(self, masks, schedule, block_size=(1, 1), scope="layer"):
        super().__init__()
        self.masks, self.schedule = masks, schedule
        self.block_size, self.scope = tuple(block_size), scope
        self.step = 0

    def on_train_begin(self, logs=None):
        self.masks.install()

    def on_train_batch_begin(self, batch, logs=None):
        update, sparsity = self.schedule(self.step)
        if update:
            self.masks.update(sparsity, self.block_size, self.scope)
        self.step += 1

    def on_train_end(self, logs=None):
        self.masks.remove()


def prune_keras3(student, x, y, teacher, schedule, options, block_size=(1, 1), scope="layer"):
    """Trains a copy of `student` under magnitude masks with `options` (a `TrainingOptions`);
    returns a plain, sparse copy.

    See `keras_distill.compression.prune` for the arguments.
    """
    model = clone_with_weights(student, "student")
    kernels = prunable_kernels(model)
    if not kernels:
        raise ValueError(
            "`student` has no kernel that magnitude pruning acts on (Dense, EinsumDense, "
            "Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D). "
            f"Received: student={student.name!r}"
        )
    update = UpdateMasks(Masks(kernels), schedule, block_size, scope)
    _training.fit(model, x, y, teacher, options.replace(callbacks=(update, *options.callbacks)))
    return clone_with_weights(model, "model")
