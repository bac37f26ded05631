"""Quantization-aware training on Keras 3: a fake-quantized copy of the student, trained.

The copy is rebuilt layer by layer (`keras.models.clone_model` with a
`call_function`):
- BatchNormalization right after a Dense or convolution (its only consumer,
  no activation in between) is folded into it, as the TFLite converter does:
  `W' = W * g`, `b' = (b - mean) * g + beta`, `g = gamma / sqrt(var + eps)`
  (per output channel); the BatchNormalization becomes an `Identity`.
- Dense, EinsumDense, Conv1D/2D, DepthwiseConv2D and SeparableConv2D become
  their `Quantized*` twins (8-bit fake-quantized kernels).
- A `FakeQuant` layer quantizes every tensor a layer computes, where the
  next layer reads it; ReLU-like activations read the float value (TFLite
  fuses them into the op before), and shape-only layers (Reshape, Flatten,
  pooling by max, padding, dropout) pass quantized values on.
Exported with `model.export()` and converted from the SavedModel with
`Optimize.DEFAULT`, the copy becomes a full int8 `.tflite` without
representative data (`export_tflite(model, path, quantization="int8")`).
"""

import numpy as np

from keras_distill._keras import all_layers
from keras_distill._keras import keras
from keras_distill._keras import layer_edges
from keras_distill.compression import _training
from keras_distill.compression.keras3.fake_quant import FakeQuant
from keras_distill.compression.keras3.masks import Masks
from keras_distill.compression.keras3.masks import prunable_kernels
from keras_distill.compression.keras3.pruning import UpdateMasks
from keras_distill.compression.keras3.quantized_layers import QUANTIZED_CLASSES

_PASS_THROUGH = (
    "Reshape",
    "Flatten",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "MaxPooling1D",
    "MaxPooling2D",
    "Cropping1D",
    "Cropping2D",
    "Permute",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "InputLayer",
)
_RELU_ACTIVATIONS = ("relu", "relu6", "linear")
_FOLDABLE = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D")
_FLOAT_OK = ("BatchNormalization",)


def _is_keras_class(layer, names):
    name = type(layer).__name__
    return name in names and type(layer) is getattr(keras.layers, name, None)


def unquantizable_layers_keras3(model):
    """Layers with weights that this package's 8-bit scheme does not quantize.

    `(name, class name)` pairs, nested models searched; BatchNormalization is
    folded or quantized by the converter, so it is not listed.
    """
    return [
        (layer.name, type(layer).__name__)
        for layer in all_layers(model, within_layers=False)
        if layer.weights
        and not isinstance(layer, keras.Model)
        and not _is_keras_class(layer, tuple(QUANTIZED_CLASSES) + _FLOAT_OK)
    ]


def _fold_pairs(model):
    """`{id(layer): bn}` for each BatchNormalization `bn` that folds into `layer` before it."""
    pairs = {}
    for sub in [model] + [
        layer for layer in all_layers(model, within_layers=False) if isinstance(layer, keras.Model)
    ]:
        producers, consumers = layer_edges(sub)
        layers = {layer.name: layer for layer in sub.layers}
        for layer in sub.layers:
            if not _is_keras_class(layer, ("BatchNormalization",)):
                continue
            sources = producers.get(layer.name, [])
            if len(sources) != 1 or sources[0] not in layers:
                continue
            before = layers[sources[0]]
            activation = getattr(before.activation, "__name__", "linear")
            if (
                _is_keras_class(before, _FOLDABLE)
                and activation == "linear"
                and consumers.get(before.name) == [layer.name]
                and getattr(before, "data_format", "channels_last") == "channels_last"
                and layer.axis in (-1, len(before.output.shape) - 1)
            ):
                pairs[id(before)] = layer
    return pairs


def fold_batch_norm(layer, batch_norm):
    """The weights of `layer` with `batch_norm` folded in, and bias always present.

    Args:
        layer: Dense, Conv1D/2D, DepthwiseConv2D or SeparableConv2D.
        batch_norm: The BatchNormalization that reads its output.

    Returns:
        A list of arrays for the layer with `use_bias=True`.
    """
    gamma = np.asarray(batch_norm.gamma) if batch_norm.scale else 1.0
    beta = np.asarray(batch_norm.beta) if batch_norm.center else 0.0
    mean, variance = np.asarray(batch_norm.moving_mean), np.asarray(batch_norm.moving_variance)
    factor = gamma / np.sqrt(variance + batch_norm.epsilon)
    name = type(layer).__name__
    kernel = np.asarray(layer.pointwise_kernel if name == "SeparableConv2D" else layer.kernel)
    bias = np.asarray(layer.bias) if layer.use_bias else np.zeros_like(mean)
    if name == "DepthwiseConv2D":
        folded = kernel * factor.reshape(kernel.shape[-2:])
    else:
        folded = kernel * factor
    new_bias = ((bias - mean) * factor + beta).astype(np.float32)
    if name == "SeparableConv2D":
        return [np.asarray(layer.depthwise_kernel), folded.astype(np.float32), new_bias]
    return [folded.astype(np.float32), new_bias]


class _Rewriter:
    """Clones a model into its quantization-aware twin (see the module docstring)."""

    def __init__(self, model):
        self.folded_into = _fold_pairs(model)
        self.folds = {id(bn) for bn in self.folded_into.values()}
        # `quantized`: tensor -> its FakeQuant output; `ready`: tensors quantized already.
        self.copies, self.quantized, self.ready = [], {}, {}

    def model(self, model, nested=False):
        if isinstance(model, keras.Sequential):
            model = keras.Model(model.inputs[0], model.outputs[0], name=model.name)
        inputs = keras.tree.map_structure(
            lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name), model.input
        )
        if nested:  # the outer model quantizes what it passes in
            self._mark_ready(inputs)
        clone = keras.models.clone_model(
            model, input_tensors=inputs, clone_function=self.layer, call_function=self.call
        )
        outputs = keras.tree.map_structure(self.quantize, clone.output)
        return keras.Model(inputs, outputs, name=model.name)

    def _mark_ready(self, tensors):
        for tensor in keras.tree.flatten(tensors):
            self.ready[id(tensor)] = (tensor, tensor)

    def layer(self, layer):
        if isinstance(layer, keras.Model):
            return self.model(layer, nested=True)
        if id(layer) in self.folds:
            return keras.layers.Identity(name=layer.name)
        config, weights = layer.get_config(), layer.get_weights()
        if id(layer) in self.folded_into:
            weights = fold_batch_norm(layer, self.folded_into[id(layer)])
            config["use_bias"] = True
        cls = type(layer)
        if _is_keras_class(layer, tuple(QUANTIZED_CLASSES)):
            cls = QUANTIZED_CLASSES[type(layer).__name__]
        clone = cls.from_config(config)
        self.copies.append((clone, weights))
        return clone

    def quantize(self, tensor):
        if not isinstance(tensor, keras.KerasTensor) or id(tensor) in self.ready:
            return self.ready.get(id(tensor), (None, tensor))[1]
        if id(tensor) not in self.quantized:
            self.quantized[id(tensor)] = (tensor, FakeQuant()(tensor))
        return self.quantized[id(tensor)][1]

    def call(self, layer, *args, **kwargs):
        if not self._reads_float(layer):
            args = keras.tree.map_structure(self.quantize, args)
            kwargs = keras.tree.map_structure(self.quantize, kwargs)
        if _is_keras_class(layer, ("Identity",)):  # a folded BatchNormalization
            args, kwargs = args[:1], {}
        outputs = layer(*args, **kwargs)
        if _is_keras_class(layer, _PASS_THROUGH) or isinstance(layer, keras.Model):
            self._mark_ready(outputs)  # shape-only layers of quantized inputs, nested models
        return outputs

    @staticmethod
    def _reads_float(layer):
        if _is_keras_class(layer, ("Identity", "ReLU")):
            return True
        if _is_keras_class(layer, ("Activation",)):
            return getattr(layer.activation, "__name__", "") in _RELU_ACTIVATIONS
        return False

    def set_weights(self):
        for clone, weights in self.copies:
            # The float layer's weights come first; any others (the range of a
            # QuantizedSeparableConv2D's intermediate_quant) keep their values.
            extra = [np.asarray(w) for w in clone.weights[len(weights) :]]
            clone.set_weights(list(weights) + extra)


def quantize_model(model):
    """The untrained quantization-aware twin of `model` (weights copied, BN folded).

    Layers that `unquantizable_layers_keras3` lists are copied as they are
    (float), with their inputs and outputs fake-quantized.

    Args:
        model: A built Keras 3 `keras.Model` (Functional or Sequential).

    Returns:
        A new Functional `keras.Model`.
    """
    rewriter = _Rewriter(model)
    qat = rewriter.model(model)
    rewriter.set_weights()
    return qat


def _never(step):
    return False, 0.0


def qat_keras3(student, x, y, teacher, options, preserve_sparsity):
    """Builds the quantization-aware copy of `student` and trains it with `options`; see
    `keras_distill.compression.quantization_aware_training` (which checked the layers)."""
    model = quantize_model(student)
    if preserve_sparsity:
        kernels = prunable_kernels(model)
        masks = [(np.asarray(kernel) != 0).astype(np.float32) for kernel in kernels]
        keep_zeros = UpdateMasks(Masks(kernels, masks), _never)
        options = options.replace(callbacks=(keep_zeros, *options.callbacks))
    _training.fit(model, x, y, teacher, options)
    return model
