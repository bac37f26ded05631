"""File sizes as shipped: raw and gzip-compressed (what an app download costs)."""

import gzip
import os

import numpy as np


def parameter_count(model):
    """Weights a model learns: the total size of its trainable weights.

    The same count in every report: pruning masks, quantizer ranges and
    BatchNormalization statistics (non-trainable) are left out, so a model
    and its pruned or quantization-aware copy count alike.
    """
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


def gzip_size(path, compresslevel=9):
    """Bytes of the file at `path` after gzip compression.

    Sparse weights only shrink a file once it is compressed: the zeros are
    still stored, but compress well.

    Args:
        path: A file path.
        compresslevel: gzip level 1-9. Defaults to `9`.

    Returns:
        An int.

    Example:
        ```python
        gzip_size("student_int8.tflite")
        ```
    """
    with open(os.fspath(path), "rb") as handle:
        return len(gzip.compress(handle.read(), compresslevel=compresslevel, mtime=0))
