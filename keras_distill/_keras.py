"""The one place that decides which Keras generation keras_distill runs on.

It also holds every use of a private Keras API (see `PRIVATE_APIS`).

Keras 3 (`import keras`, TensorFlow backend) is the default. Setting the
environment variable `TF_USE_LEGACY_KERAS=1` *before* importing keras_distill
selects Keras 2 (`tf_keras`), which tensorflow-model-optimization needs.
Every other module imports `keras` from here and uses the small helpers below
wherever the two generations differ.
"""

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
}

ATTENTION_METHOD = "_compute_attention"
"""The `MultiHeadAttention` method that computes the attention probabilities."""


def all_layers(model):
    """Every layer inside `model`, depth first, without `model` itself."""
    return list(model._flatten_layers(include_self=False, recursive=True))


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


def with_metric_mask(values, mask):
    """A copy of `values` carrying the boolean `mask` as its Keras mask.

    Compiled metrics of both generations read the mask of the predictions
    and leave masked-out rows out (Keras 3: `MeanMetricWrapper`; tf_keras:
    its metrics container), for `metrics` and `weighted_metrics` alike.
    """
    values = tf.identity(values)
    values._keras_mask = mask
    return values
