"""Captures layer outputs and attention probabilities during a model's own forward pass.

While `recording()` is active, chosen layers of a model record what they
compute; the model runs once, unchanged, and gives its outputs as usual.
Works for Sequential, Functional, nested and subclassed models (layers found
by name anywhere inside, or by a `"outer/inner"` path).
"""

import contextlib

from keras_distill._keras import ATTENTION_METHOD
from keras_distill._keras import all_layers
from keras_distill._keras import compute_attention
from keras_distill._keras import keras
from keras_distill._keras import uses_flash_attention


def find_layer(model, name, role):
    """The layer called `name` (or at path `"outer/inner"`) inside `model`.

    A layer whose own name is `name` wins over a path (tf_keras's
    MobileNetV3 names layers like `"expanded_conv_2/Add"`).

    Raises:
        ValueError: with the names that do exist, when there is no such layer.
    """
    exact = next((layer for layer in all_layers(model) if layer.name == name), None)
    if exact is not None:  # tf_keras names some layers with a slash, e.g. "expanded_conv/Add".
        return exact
    owner = model
    for part in name.split("/"):
        found = next((layer for layer in all_layers(owner) if layer.name == part), None)
        if found is None:
            existing = [layer.name for layer in all_layers(model)]
            raise ValueError(
                f"No such layer: {name!r} in the {role} {model.name!r}. "
                f"Existing layers are: {existing}. Received: {role}_layer={name!r}"
            )
        owner = found
    return owner


def attention_softmax(layer):
    """The `keras.layers.Softmax` inside an attention layer that is not a `MultiHeadAttention`
    (keras_hub's Llama, Mistral and Gemma attention), or `None`."""
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return None
    return next((s for s in all_layers(layer) if isinstance(s, keras.layers.Softmax)), None)


def _check_capturable(kind, layer, name, role):
    if (
        kind == "attention"
        and not isinstance(layer, keras.layers.MultiHeadAttention)
        and attention_softmax(layer) is None
    ):
        raise ValueError(
            f"An attention match needs a keras.layers.MultiHeadAttention layer (or a "
            f"subclass), or an attention layer that computes its probabilities with a "
            f"keras.layers.Softmax. Received: {role}_layer={name!r} of type "
            f"{type(layer).__name__}"
        )


def captured_shape(value):
    """The shape of a captured value, as a tuple.

    Output captures are tensors (their shape); attention captures are
    `(probabilities, mask)` pairs (the probabilities' shape).
    """
    if isinstance(value, (tuple, list)):
        value = value[0]
    return tuple(value.shape)


class LayerCapture:
    """Records the output (or attention probabilities) of named layers of one model.

    Args:
        model: The model the layers belong to.
        requests: List of `(layer_name, kind)`, kind `"output"` or `"attention"`.
        role: `"student"` or `"teacher"`, used in error messages.
    """

    def __init__(self, model, requests, role):
        self.model = model
        self.role = role
        self.layers = {}
        for name, kind in requests:
            layer = find_layer(model, name, role)
            _check_capturable(kind, layer, name, role)
            if kind == "attention" and uses_flash_attention(layer):
                raise ValueError(
                    f"An attention match cannot capture the attention probabilities of the "
                    f"{role} layer {name!r} ({type(layer).__name__}): it uses flash attention, "
                    "which never forms them. Build the model with flash attention off "
                    "(`keras.config.disable_flash_attention()` before building it, or "
                    f"`flash_attention=False` on the layer). Received: {role}_layer={name!r}"
                )
            self.layers[(name, kind)] = layer
        self.values = {}

    def _recorded_layer(self, key):
        """`(layer whose method is replaced, method name, recorder factory)` for `key`."""
        layer = self.layers[key]
        if key[1] == "attention":
            softmax = attention_softmax(layer)
            if softmax is not None:  # Its output is the probabilities, its mask the mask.
                return softmax, "call", self._softmax_recorder
        attribute, make_recorder = self._recorders()[key[1]]
        return layer, attribute, make_recorder

    @contextlib.contextmanager
    def recording(self):
        """Installs the recorders for the duration of one forward pass."""
        self.values = {}
        installed = []
        try:
            for key in self.layers:
                layer, attribute, make_recorder = self._recorded_layer(key)
                original = getattr(layer, attribute)
                object.__setattr__(layer, attribute, make_recorder(key, original))
                installed.append((layer, attribute))
            yield self.values
        finally:
            for layer, attribute in installed:
                object.__delattr__(layer, attribute)

    def _recorders(self):
        """`{kind: (method replaced while recording, recorder factory)}`."""
        return {
            "output": ("call", self._output_recorder),
            "attention": (ATTENTION_METHOD, self._attention_recorder),
        }

    def _output_recorder(self, key, original):
        def call(*args, **kwargs):
            outputs = original(*args, **kwargs)
            self.values[key] = outputs
            return outputs

        return call

    def _softmax_recorder(self, key, original):
        def call(inputs, mask=None, **kwargs):
            probabilities = original(inputs, mask=mask, **kwargs)
            self.values[key] = (probabilities, mask)
            return probabilities

        return call

    def _attention_recorder(self, capture_key, original):
        def record(
            query,
            key,
            value,
            attention_mask=None,
            training=None,
            return_attention_scores=False,
            **kwargs,
        ):
            output, scores = compute_attention(
                original, query, key, value, attention_mask, training, **kwargs
            )
            self.values[capture_key] = (scores, attention_mask)
            return output, scores

        return record
