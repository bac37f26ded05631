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

    Raises:
        ValueError: with the names that do exist, when there is no such layer.
    """
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


def _check_capturable(kind, layer, name, role):
    if kind == "attention" and not isinstance(layer, keras.layers.MultiHeadAttention):
        raise ValueError(
            f"An attention match needs a keras.layers.MultiHeadAttention layer (or a "
            f"subclass). Received: {role}_layer={name!r} of type {type(layer).__name__}"
        )


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
            self.layers[(name, kind)] = layer
        self.values = {}

    @contextlib.contextmanager
    def recording(self):
        """Installs the recorders for the duration of one forward pass."""
        self.values = {}
        installed = []
        try:
            for key, layer in self.layers.items():
                attribute, make_recorder = self._recorders()[key[1]]
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

    def _attention_recorder(self, key, original):
        layer = self.layers[key]

        def record(query, key_tensor, value, attention_mask=None, training=None,
                   return_attention_scores=False, **kwargs):
            if uses_flash_attention(layer):
                raise ValueError(
                    "Attention probabilities cannot be captured from a layer that uses "
                    "flash attention. Create it with `flash_attention=False`. "
                    f"Received: {self.role}_layer={layer.name!r}"
                )
            output, scores = compute_attention(
                original, query, key_tensor, value, attention_mask, training, **kwargs
            )
            self.values[key] = (scores, attention_mask)
            return output, scores

        return record
