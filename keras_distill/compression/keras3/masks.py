"""Magnitude masks of prunable kernels, and the constraint that applies them after each step.

A mask keeps the `k = max(round(n * (1 - s)), 1)` weights of largest
magnitude of a kernel of `n` weights (`s` the sparsity; float32 arithmetic,
as tensorflow-model-optimization), so every pruned kernel ends with exactly
`n - k` zeros. The mask is a `tf.Variable` read by a kernel constraint;
Keras 3 optimizers apply variable constraints right after
`apply_gradients`, so the pruned weights are set back to exactly zero on
every training step, whatever Adam's moments would make of them.
"""

import numpy as np
import tensorflow as tf

from keras_distill._keras import all_layers
from keras_distill._keras import keras
from keras_distill._keras import kernel_variable

# Kernel attributes pruned per layer class and its subclasses (tfmot's registry, plus
# EinsumDense).
PRUNABLE_KERNELS = {
    "Dense": ("kernel",),
    "EinsumDense": ("kernel",),
    "Conv1D": ("kernel",),
    "Conv2D": ("kernel",),
    "Conv3D": ("kernel",),
    "DepthwiseConv2D": ("kernel",),
    "DepthwiseConv1D": ("kernel",),
    "SeparableConv1D": ("pointwise_kernel",),
    "SeparableConv2D": ("pointwise_kernel",),
}


def prunable_kernels(model):
    """The kernel variables magnitude pruning acts on, in layer order."""
    kernels = []
    classes = [
        (getattr(keras.layers, name), attributes) for name, attributes in PRUNABLE_KERNELS.items()
    ]
    for layer in all_layers(model, within_layers=False):
        found = [attributes for cls, attributes in classes if isinstance(layer, cls)]
        for attribute in found[0] if found else ():
            variable = kernel_variable(layer, attribute)
            if variable is not None and variable.trainable:
                kernels.append(variable)
    return kernels


def kept_count(size, sparsity):
    """Weights a kernel of `size` keeps at `sparsity` (tfmot's float32 rounding)."""
    kept = int(np.round(np.float32(size) * (np.float32(1.0) - np.float32(sparsity))))
    return min(max(kept, 1), size)


def _top_mask(scores, kept):
    """1 for the `kept` largest scores (ties broken by position), 0 elsewhere."""
    flat = scores.ravel()
    mask = np.zeros(flat.shape, np.float32)
    mask[np.argsort(-flat, kind="stable")[:kept]] = 1.0
    return mask.reshape(scores.shape)


def _as_blocks(values, block_size):
    """`values` as a 2-D matrix (last axis kept) padded to whole blocks, and its padding."""
    matrix = values.reshape(-1, values.shape[-1]) if values.ndim != 2 else values
    rows, cols = block_size
    pad = (-matrix.shape[0] % rows, -matrix.shape[1] % cols)
    return np.pad(matrix, ((0, pad[0]), (0, pad[1]))), matrix.shape


def block_scores(values, block_size):
    """Mean |w| of each `block_size` block of the kernel (tfmot's average pooling)."""
    padded, _ = _as_blocks(np.abs(values), block_size)
    rows, cols = block_size
    blocks = padded.reshape(padded.shape[0] // rows, rows, padded.shape[1] // cols, cols)
    return blocks.mean(axis=(1, 3))


def expand_blocks(block_mask, shape, block_size):
    """A block mask spread back over the weights of a kernel of `shape`."""
    rows, cols = block_size
    full = np.kron(block_mask, np.ones((rows, cols), np.float32))
    matrix_shape = (int(np.prod(shape[:-1])), shape[-1]) if len(shape) != 2 else tuple(shape)
    return full[: matrix_shape[0], : matrix_shape[1]].reshape(shape)


def magnitude_mask(values, sparsity, block_size=(1, 1)):
    """Mask of one kernel keeping its largest weights (or blocks) at `sparsity`.

    Args:
        values: The kernel, a NumPy array.
        sparsity: Target fraction of zeros, in `[0, 1)`.
        block_size: `(rows, cols)` blocks of the kernel seen as a matrix
            (last axis = columns) pruned together. Defaults to `(1, 1)`.

    Returns:
        A float32 array of 0 and 1 of the kernel's shape.
    """
    values = np.asarray(values, np.float32)
    if tuple(block_size) == (1, 1):
        return _top_mask(np.abs(values), kept_count(values.size, sparsity))
    scores = block_scores(values, block_size)
    block_mask = _top_mask(scores, kept_count(scores.size, sparsity))
    return expand_blocks(block_mask, values.shape, block_size)


def global_masks(kernels, sparsity):
    """Masks keeping the largest weights over all `kernels` together (one threshold).

    The model as a whole keeps `max(round(N * (1 - s)), 1)` of its `N` kernel
    weights; single kernels end sparser or denser than `s`.
    """
    flat = np.concatenate([np.abs(np.asarray(k, np.float32)).ravel() for k in kernels])
    mask = _top_mask(flat, kept_count(flat.size, sparsity))
    masks, start = [], 0
    for kernel in kernels:
        size = int(np.prod(np.shape(kernel)))
        masks.append(mask[start : start + size].reshape(np.shape(kernel)))
        start += size
    return masks


class MaskConstraint:
    """Kernel constraint `w -> original(w) * mask`, with the mask in a `tf.Variable`.

    Args:
        mask: `tf.Variable` of 0 and 1, the kernel's shape.
        original: The kernel's constraint before pruning, applied first, or
            `None`.
    """

    def __init__(self, mask, original=None):
        self.mask, self.original = mask, original

    def __call__(self, weight):
        if self.original is not None:
            weight = self.original(weight)
        return weight * tf.cast(self.mask, weight.dtype)


class Masks:
    """Masks of a set of kernel variables: installed, updated, applied and removed.

    Args:
        kernels: Keras kernel variables.
        initial: Optional list of initial masks (arrays); defaults to ones.
    """

    def __init__(self, kernels, initial=None):
        self.kernels = list(kernels)
        initial = initial or [np.ones(k.shape, np.float32) for k in self.kernels]
        self.masks = [tf.Variable(m, trainable=False, dtype=tf.float32) for m in initial]
        self.originals = [k.constraint for k in self.kernels]

    def install(self):
        """Sets the mask constraints and zeroes the masked weights now."""
        for kernel, mask, original in zip(self.kernels, self.masks, self.originals):
            kernel.constraint = MaskConstraint(mask, original)
        self.apply()

    def apply(self):
        for kernel, mask in zip(self.kernels, self.masks):
            kernel.assign(kernel * tf.cast(mask, kernel.dtype))

    def update(self, sparsity, block_size=(1, 1), scope="layer"):
        """New magnitude masks at `sparsity` (per kernel, or one global threshold)."""
        values = [np.asarray(k.numpy(), np.float32) for k in self.kernels]
        if scope == "global":
            new = global_masks(values, sparsity)
        else:
            new = [magnitude_mask(v, sparsity, block_size) for v in values]
        for mask, value in zip(self.masks, new):
            mask.assign(value)
        self.apply()

    def remove(self):
        """Restores the kernels' own constraints; the weights keep their zeros."""
        self.apply()
        for kernel, original in zip(self.kernels, self.originals):
            kernel.constraint = original
