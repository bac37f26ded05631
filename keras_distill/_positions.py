"""Which positions of the logits count, and how much: labels, sample weights and masks.

Logits have shape `(batch, ..., classes)`: one row per example for a
classifier, one per token for a causal LM or a tagger, one per pixel for
segmentation. The axes before `classes` are the *positions*. Every loss term
is computed per position and averaged over the positions that count,
`sum(w * l) / sum(w)`, where the weight `w` of a position is the product of

1. its `sample_weight` (shape `(batch,)`, broadcast over the positions, or the
   positions' shape, as keras_hub's preprocessors yield it),
2. its padding mask, when the Distiller is told which input holds one,
3. for logits with positions, whether it has a label: a sparse label equal to
   `label_mask_value` (e.g. `-100` in Hugging Face data, `255` in
   segmentation data) takes the position out of every term. With one row per
   example such a label only drops the hard-label term (the example is still
   distilled), as for an x-only transfer set.
"""

import tensorflow as tf

from keras_distill import _keras


def has_positions(logits):
    """True when the logits have axes between the batch and the classes."""
    return logits.shape.rank is not None and logits.shape.rank > 2


def is_one_hot(labels, logits):
    """True for one-hot (or soft) label rows, False for class indices."""
    return labels.shape.rank == logits.shape.rank and labels.shape[-1] != 1


def class_indices(labels, logits):
    """Class indices shaped as the positions, `(batch, ...)`, from sparse or one-hot labels."""
    if is_one_hot(labels, logits):
        return tf.argmax(labels, axis=-1, output_type=tf.int32)
    return tf.reshape(tf.cast(labels, tf.int32), tf.shape(logits)[:-1])


def label_mask(labels, logits, mask_value):
    """1.0 for positions that carry a label, 0.0 where the label equals `mask_value`.

    A one-hot row whose entries all equal `mask_value` is missing too.
    """
    is_missing = tf.equal(labels, tf.cast(mask_value, labels.dtype))
    if is_one_hot(labels, logits):
        is_missing = tf.reduce_all(is_missing, axis=-1)
    is_missing = tf.reshape(is_missing, tf.shape(logits)[:-1])
    return 1.0 - tf.cast(is_missing, tf.float32)


def fill_missing_labels(labels, mask, logits):
    """Missing labels replaced by class 0 (their weight is zero), so that losses stay finite."""
    if is_one_hot(labels, logits):
        return tf.where(mask[..., None] > 0, labels, tf.zeros_like(labels))
    labels = tf.reshape(labels, tf.shape(mask))
    return tf.where(mask > 0, labels, tf.zeros_like(labels))


def position_weights(values, logits, name):
    """`values` (`None`, `(batch,)` or the positions' shape) as float32 weights `(batch, ...)`.

    Raises:
        ValueError: when the shape fits neither one weight per example nor
            one per position.
    """
    positions = tf.shape(logits)[:-1]
    if values is None:
        return tf.ones(positions, tf.float32)
    values = tf.cast(values, tf.float32)
    expected = logits.shape[:-1]
    shape = values.shape
    if shape.rank is not None and shape.rank == expected.rank + 1 and shape[-1] == 1:
        values = tf.squeeze(values, axis=-1)
        shape = values.shape
    if shape.rank is not None and shape.rank > 1 and not shape.is_compatible_with(expected):
        raise ValueError(
            f"`{name}` must have one value per example `(batch,)` or one per position "
            f"{_spelled(expected)}, the logits' shape without the classes. "
            f"Received: {name} with shape {_spelled(shape)}"
        )
    if shape.rank == 1 and expected.rank > 1:
        values = tf.reshape(values, [-1] + [1] * (expected.rank - 1))
        return tf.broadcast_to(values, positions)
    return tf.reshape(values, positions)


def padding_weights(x, input_name, logits):
    """The padding mask `x[input_name]` as weights `(batch, ...)`, or `None` when not named.

    Raises:
        ValueError: when `x` has no input of that name.
    """
    if input_name is None:
        return None
    if not isinstance(x, dict) or input_name not in x:
        keys = sorted(x) if isinstance(x, dict) else f"a {type(x).__name__}, not a dict"
        raise ValueError(
            f"`padding_mask_input` names an input of `x` that holds the padding mask, but `x` "
            f"has none of that name. Its inputs: {keys}. "
            f"Received: padding_mask_input={input_name!r}"
        )
    return position_weights(x[input_name], logits, "padding mask")


def weighted_mean(values, weights, total_weight=None):
    """This replica's share of the global weighted mean `sum(w * v) / sum(w)`.

    Positions of weight 0 add nothing, even where `values` is NaN; a batch
    without weight gives 0. `total_weight`, the global `sum(w)`, is computed
    when not given.
    """
    if total_weight is None:
        total_weight = _keras.global_sum(tf.reduce_sum(weights))
    values = tf.where(weights > 0, values, tf.zeros_like(values))
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights), total_weight)


def _spelled(shape):
    """A static shape written with `batch` for the first axis, e.g. `(batch, 16)`."""
    if shape.rank is None:
        return "unknown"
    dims = ["batch"] + [str(dim) for dim in shape.as_list()[1:]]
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"
