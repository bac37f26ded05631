"""Picking the distilled output out of a model's outputs, the same way everywhere."""

import tensorflow as tf


def is_nested(value):
    """True for a dict, list or tuple (several outputs, or several labels)."""
    return isinstance(value, (dict, list, tuple))


def output_names(outputs, model):
    """Names of a model's outputs: the dict keys, or the model's `output_names`."""
    if isinstance(outputs, dict):
        return list(outputs)
    return list(getattr(model, "output_names", None) or [])


def select_output(outputs, key, model, role):
    """The output to distil among a model's outputs.

    Args:
        outputs: What the model returned: a tensor, or a dict/list of them.
        key: Name or index of the output; `None` when there is one output.
        model: The model (for its `output_names`).
        role: `"student"`, `"teacher"` or `"y"`; errors name `<role>_output`.

    Raises:
        ValueError: when `key` is missing for several outputs, or names none.
    """
    if not is_nested(outputs):
        if key not in (None, 0) and not isinstance(key, str):
            raise ValueError(
                f"`{role}_output` must be None for a single output. Received: {role}_output={key!r}"
            )
        return outputs
    names = output_names(outputs, model)
    if key is None:
        if len(outputs) == 1:
            return outputs[names[0]] if isinstance(outputs, dict) else outputs[0]
        raise ValueError(
            f"The {role} has {len(outputs)} outputs {names}; name the one to distil "
            f"with `{role}_output=`. Received: {role}_output=None"
        )
    if isinstance(outputs, dict):
        if key in outputs:
            return outputs[key]
    elif isinstance(key, int) and -len(outputs) <= key < len(outputs):
        return outputs[key]
    elif key in names:
        return outputs[names.index(key)]
    raise ValueError(
        f"No output {key!r} in the {role}'s outputs. Existing outputs are: {names}. "
        f"Received: {role}_output={key!r}"
    )


def static_output_shape(model, key, role):
    """The distilled output's static shape, or `None` when the model cannot tell."""
    try:
        outputs = model.output
    except (AttributeError, ValueError):
        return None
    if outputs is None:
        return None
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        outputs = outputs[0]
    return tuple(select_output(outputs, key, model, role).shape)


def logits_from(outputs, from_logits):
    """Float32 logits: `outputs` itself, or `log(p)` when they are probabilities."""
    outputs = tf.cast(outputs, tf.float32)
    if from_logits:
        return outputs
    return tf.math.log(tf.maximum(outputs, 1e-12))
