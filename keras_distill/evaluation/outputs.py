"""A model's outputs on a whole dataset, computed eagerly in chunks (nothing is traced)."""

import numpy as np
import tensorflow as tf


def model_outputs(model, x, batch_size=256, dtype="float64"):
    """`model(x, training=False)` over `x` in chunks of `batch_size`, as NumPy arrays.

    Unlike `model.predict`, this traces no `tf.function`: evaluating many
    models (or one model after every epoch) on a set whose size is not a
    multiple of the batch size makes `predict` trace once per batch shape and
    model, and TensorFlow then warns about retracing.

    Args:
        model: A `keras.Model`.
        x: Inputs: an array, or a dict/list of arrays with the same length.
        batch_size: Rows per call. Defaults to `256`.
        dtype: dtype of the returned arrays. Defaults to `"float64"`.

    Returns:
        The outputs, examples first: an array, or the model's dict/list of
        arrays when it has several outputs.

    Example:
        ```python
        logits = model_outputs(student, x_val)
        accuracy = np.mean(logits.argmax(-1) == y_val)
        ```
    """
    leaves = tf.nest.flatten(x)
    num_examples = len(leaves[0])
    chunks = []
    for start in range(0, num_examples, batch_size):
        inputs = tf.nest.map_structure(lambda a: np.asarray(a)[start : start + batch_size], x)
        chunks.append(model(inputs, training=False))
    return tf.nest.map_structure(
        lambda *parts: np.concatenate([np.asarray(part, dtype) for part in parts]), *chunks
    )
