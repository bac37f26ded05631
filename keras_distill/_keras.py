"""The one place that decides which Keras generation keras_distill runs on.

It also holds every use of a private Keras API (see `PRIVATE_APIS`).

Keras 3 (`import keras`, TensorFlow backend) is the default. Setting the
environment variable `TF_USE_LEGACY_KERAS=1` *before* importing keras_distill
selects Keras 2 (`tf_keras`), which tensorflow-model-optimization needs.
Every other module imports `keras` from here and uses the small helpers below
wherever the two generations differ.
"""

import itertools
import os

import tensorflow as tf

_TRUE_VALUES = ("1", "true", "yes")

IS_LEGACY = os.environ.get("TF_USE_LEGACY_KERAS", "0").strip().lower() in _TRUE_VALUES

if IS_LEGACY:
    try:
        import tf_keras as keras
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "TF_USE_LEGACY_KERAS=1 selects the legacy Keras generation, which "
            "needs the `tf-keras` package. Install it with "
            "`pip install 'keras-distill[legacy]'`."
        ) from error
else:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "keras_distill runs on the TensorFlow backend of Keras 3. Set "
            "KERAS_BACKEND=tensorflow before importing it. "
            f"Received: KERAS_BACKEND={keras.backend.backend()!r}"
        )

GENERATION = "tf_keras" if IS_LEGACY else "keras3"
"""Name of the active generation: `"keras3"` or `"tf_keras"`."""

KERAS_VERSION = keras.__version__


def register_serializable(cls):
    """Registers `cls` for Keras serialization under `package="keras_distill"`."""
    return keras.saving.register_keras_serializable(package="keras_distill")(cls)


def serialize(obj):
    """Serializes a Keras object (model, layer, loss) into a config dict."""
    return keras.saving.serialize_keras_object(obj)


def deserialize(config):
    """Rebuilds a Keras object from a config produced by `serialize`."""
    return keras.saving.deserialize_keras_object(config)


def unpack_x_y_sample_weight(data):
    """Splits a batch into `(x, y, sample_weight)`, `None` where absent."""
    return keras.utils.unpack_x_y_sample_weight(data)


def num_replicas_in_sync():
    """Number of replicas the current `tf.distribute` strategy trains on."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def global_sum(value):
    """Sum of `value` over all replicas (itself outside a multi-replica step)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def scale_loss(optimizer, loss):
    """Applies the optimizer's loss scaling (mixed precision), inside the tape."""
    if IS_LEGACY:
        if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
            return optimizer.get_scaled_loss(loss)
        return loss
    return optimizer.scale_loss(loss)


def build_optimizer(optimizer, variables):
    """Creates `optimizer`'s state (Adam's moments, loss scales) for `variables`, once.

    Keras otherwise creates it inside the first traced training step, and a
    variable created while `tf.function` traces makes TensorFlow trace the
    step a second time. tf_keras's legacy optimizers (`optimizers.legacy`)
    keep creating it there.
    """
    if IS_LEGACY:
        if hasattr(optimizer, "build"):  # Its own `_built` flag makes this a no-op once built.
            optimizer.build(variables)
    elif not optimizer.built:
        optimizer.build(variables)


def apply_gradients(optimizer, gradients, variables):
    """Unscales (mixed precision) and applies `gradients` to `variables`."""
    if IS_LEGACY and isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
        gradients = optimizer.get_unscaled_gradients(gradients)
    optimizer.apply_gradients(zip(gradients, variables))


# Private Keras APIs. Every use of a private name lives below, nowhere else.
# Checked on Keras 3.15.1 and tf_keras 2.21.0; tests/test_keras.py fails
# loudly when a Keras release renames or changes one of them.

PRIVATE_APIS = {
    "Layer._flatten_layers": "every layer inside a model, at any depth (all_layers)",
    "MultiHeadAttention._compute_attention": "attention probabilities (compute_attention)",
    "MultiHeadAttention._flash_attention": "Keras 3 only: flash attention hides them",
    "Model._compile_metrics": "Keras 3 only: the compiled metrics (compiled_metric_objects)",
    "Tensor._keras_mask": "positions left out of compiled metrics (with_metric_mask)",
    "Layer._kernel": "Keras 3 only: the variable behind a kernel property (kernel_variable)",
    "Functional config inbound_nodes": "Keras 3 only: which layer feeds which (layer_edges)",
    "Model.train_function": "the traced train and test steps, dropped to retrace them "
    "(forget_compiled_steps)",
}

ATTENTION_METHOD = "_compute_attention"
"""The `MultiHeadAttention` method that computes the attention probabilities."""


def all_layers(model, within_layers=True):
    """Every layer inside `model`, depth first, each once, without `model` itself.

    Args:
        model: A Keras model (or layer).
        within_layers: Whether to enter the layers that a layer owns (such as
            `MultiHeadAttention`'s projections). With `False`, only nested
            models are entered: the layers a model lists in `layers`.
    """
    if within_layers:
        return list(model._flatten_layers(include_self=False, recursive=True))
    seen, stack, ordered = set(), list(reversed(model.layers)), []
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        ordered.append(layer)
        if isinstance(layer, keras.Model):
            stack.extend(reversed(layer.layers))
    return ordered


def kernel_variable(layer, attribute):
    """The trainable-or-not variable behind `layer.<attribute>` (`"kernel"`), or `None`.

    Keras 3 layers keep their kernel in the private `_<attribute>` and may
    compute the public property (LoRA adds to it, quantized layers rebuild
    it), so the stored variable is read first; tf_keras stores it under the
    public name.
    """
    variable_class = tf.Variable if IS_LEGACY else keras.Variable
    variable = None if IS_LEGACY else getattr(layer, "_" + attribute, None)
    if not isinstance(variable, variable_class):
        variable = getattr(layer, attribute, None)
    return variable if isinstance(variable, variable_class) else None


def layer_edges(model):
    """`(producers, consumers)`: layer name -> names of the layers it reads / feeds.

    A model's outputs are consumed by `None`. For a functional model the
    edges are read from its serialized config (Keras 3's `inbound_nodes`
    entries with `keras_history`, and `output_layers`).
    """
    producers, consumers = {}, {}
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        for before, after in itertools.pairwise(names):
            producers.setdefault(after, []).append(before)
            consumers.setdefault(before, []).append(after)
        outputs = names[-1:]
    else:
        config = model.get_config()
        for layer in config["layers"]:
            for source in _histories(layer.get("inbound_nodes", [])):
                producers.setdefault(layer["name"], []).append(source)
                consumers.setdefault(source, []).append(layer["name"])
        outputs = list(_histories(config.get("output_layers", []), lists=True))
    for name in outputs:
        consumers.setdefault(name, []).append(None)
    return producers, consumers


def _histories(value, lists=False):
    """Layer names in `keras_history` entries (or `[name, node, index]` lists)."""
    if isinstance(value, dict):
        if "keras_history" in value:
            yield value["keras_history"][0]
            return
        for item in value.values():
            yield from _histories(item, lists)
    elif isinstance(value, (list, tuple)):
        if lists and len(value) == 3 and isinstance(value[0], str):
            yield value[0]
            return
        for item in value:
            yield from _histories(item, lists)


def uses_flash_attention(layer):
    """Whether a `MultiHeadAttention` layer computes attention with flash attention.

    Reads the private `layer._flash_attention` (Keras 3.6 to 3.15; tf_keras
    has no flash attention). Flash attention never forms the attention
    probabilities, so they cannot be captured.
    """
    return bool(getattr(layer, "_flash_attention", False))


def compute_attention(original, query, key, value, attention_mask, training, **kwargs):
    """Calls the original `_compute_attention`; returns `(output, probabilities)`.

    tf_keras's signature is `(query, key, value, attention_mask, training)`;
    Keras 3 adds `return_attention_scores` (passed as `True`) and keywords.
    """
    if IS_LEGACY:
        return original(query, key, value, attention_mask, training)
    return original(query, key, value, attention_mask, training, True, **kwargs)


def compiled_metric_objects(model):
    """The metric objects `compile(metrics=...)` created on `model`."""
    if IS_LEGACY:
        compiled = getattr(model, "compiled_metrics", None)
        return list(compiled.metrics) if compiled is not None else []
    compiled = getattr(model, "_compile_metrics", None)
    return [compiled] if compiled is not None else []


def forget_compiled_steps(model):
    """Drops `model`'s traced train and test steps, so that the next `fit` traces them again."""
    model.train_function = model.test_function = None


def with_metric_mask(values, mask):
    """A copy of `values` carrying the boolean `mask` as its Keras mask.

    Compiled metrics of both generations read the mask of the predictions
    and leave masked-out rows out (Keras 3: `MeanMetricWrapper`; tf_keras:
    its metrics container), for `metrics` and `weighted_metrics` alike.
    """
    values = tf.identity(values)
    values._keras_mask = mask
    return values
