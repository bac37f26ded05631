"""The `.tflite` signature of a Keras model: its inputs and outputs under their Keras names.

Android's `Interpreter.runSignature(inputs, outputs, "serving_default")`
and LiteRT's `get_signature_runner()` address tensors by these names, so a
model with several inputs (a text model's `token_ids`, `segment_ids`,
`padding_mask`) or several outputs keeps the names it has in Keras.
"""

import numpy as np
import tensorflow as tf

from keras_distill._keras import keras

SIGNATURE_KEY = "serving_default"


def _known(model, attribute):
    try:
        return getattr(model, attribute)
    except (AttributeError, ValueError):
        return None


def functional_view(model, example):
    """`model` if it knows its inputs, else a functional model around it shaped like `example`.

    Subclassed models have no `model.input`; the view shares their layers and
    weights, takes inputs of `example`'s shapes and dtypes (batch axis
    `None`; a dict keeps its keys as input names) and returns their outputs.

    Raises:
        ValueError: when the model has no known inputs and there is no example.
    """
    if _known(model, "input") is not None:
        return model
    if example is None:
        raise ValueError(
            "`model` does not know its inputs (a subclassed model), so pass `sample_inputs` "
            "(or `representative_data`): the file's inputs take their shapes and dtypes. "
            f"Received: model={model.name!r} without `model.input` and sample_inputs=None"
        )

    def symbolic(value, name):
        value = np.asarray(value)
        dtype = "float32" if value.dtype.kind == "f" else "int32"
        return keras.Input(value.shape[1:], dtype=dtype, name=name)

    if isinstance(example, dict):
        inputs = {name: symbolic(value, name) for name, value in example.items()}
    elif isinstance(example, (list, tuple)):
        inputs = [symbolic(value, f"input_{i}") for i, value in enumerate(example)]
    else:
        inputs = symbolic(example, "input")
    return keras.Model(inputs, model(inputs), name=model.name)


def _structure(model, attribute):
    """`model.input` or `model.output`: a tensor, a list or a dict of tensors."""
    structure = _known(model, attribute)
    if structure is None:
        raise ValueError(
            f"`model` must know its inputs and outputs to be exported. Received: "
            f"model={model.name!r} without `{attribute}`"
        )
    if isinstance(structure, tuple):
        structure = list(structure)
    return structure


def _unique(names):
    seen = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}_{count}")
    return unique


def input_names(model):
    """The model's input names, in the order of `tf.nest.flatten(model.input)`."""
    structure = _structure(model, "input")
    if isinstance(structure, dict):
        return sorted(structure)
    tensors = tf.nest.flatten(structure)
    names = list(getattr(model, "input_names", None) or [])
    if len(names) != len(tensors):
        names = [getattr(tensor, "name", None) or f"input_{i}" for i, tensor in enumerate(tensors)]
    return _unique([name.split(":")[0] for name in names])


def output_names(model):
    """The model's output names, in the order of `tf.nest.flatten(model.output)`."""
    structure = _structure(model, "output")
    if isinstance(structure, dict):
        return sorted(structure)
    count = len(tf.nest.flatten(structure))
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != count:
        names = [f"output_{i}" for i in range(count)]
    return _unique(names)


def input_signature(model):
    """Named `tf.TensorSpec`s nested as `model.input`, batch axis `None`."""
    structure = _structure(model, "input")
    specs = [
        tf.TensorSpec((None, *tensor.shape[1:]), tf.as_dtype(tensor.dtype), name=name)
        for tensor, name in zip(tf.nest.flatten(structure), input_names(model))
    ]
    return tf.nest.pack_sequence_as(structure, specs)


def serving_function(model):
    """`inputs -> {output name: tensor}`: the model in inference mode, outputs named."""
    names = output_names(model)

    def serve(inputs):
        return dict(zip(names, tf.nest.flatten(model(inputs, training=False))))

    return serve


def named_arrays(model, x, argument):
    """Inputs `x` (array, list or dict, batch first) as `{input name: array}`.

    Float inputs become float32; integer inputs keep an integer dtype.

    Raises:
        ValueError: when `x` does not hold the model's inputs.
    """
    names = input_names(model)
    if isinstance(x, dict):
        missing = sorted(set(names) - set(x))
        if missing:
            raise ValueError(
                f"`{argument}` lacks the model's inputs {missing}. Expected the keys {names}. "
                f"Received: {argument} with keys {sorted(x)}"
            )
        values = [x[name] for name in names]
    else:
        values = list(x) if isinstance(x, (list, tuple)) and len(names) > 1 else [x]
        if len(values) != len(names):
            raise ValueError(
                f"`{argument}` must hold the model's {len(names)} inputs {names} (a dict by name "
                f"or a list in order). Received: {argument} with {len(values)} entries"
            )
    dtypes = [spec.dtype for spec in tf.nest.flatten(input_signature(model))]
    arrays = {}
    for name, value, dtype in zip(names, values, dtypes):
        numpy_dtype = np.float32 if dtype.is_floating else dtype.as_numpy_dtype
        try:
            arrays[name] = np.asarray(value, dtype=numpy_dtype)
        except (TypeError, ValueError):
            raise ValueError(
                f"`{argument}` must be an array of inputs (batch first), a dict of them by "
                f"input name, or a tf.data.Dataset. Received: {argument}={type(value).__name__}"
            ) from None
    if any(array.ndim < 1 for array in arrays.values()):
        raise ValueError(
            f"`{argument}` must hold a batch axis first. Received: {argument} with shapes "
            f"{[array.shape for array in arrays.values()]}"
        )
    lengths = {len(array) for array in arrays.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            f"`{argument}` must hold at least one example, the same number for every input. "
            f"Received: {argument} with lengths {[len(a) for a in arrays.values()]}"
        )
    return arrays


def as_model_inputs(model, arrays):
    """`{input name: array}` nested back into the structure of `model.input`."""
    structure = _structure(model, "input")
    flat = [arrays[name] for name in input_names(model)]
    return tf.nest.pack_sequence_as(structure, flat)
