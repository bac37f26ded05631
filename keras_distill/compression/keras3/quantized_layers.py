"""Keras 3 layers whose kernels are 8-bit fake-quantized on every call.

Each is the Keras layer it subclasses, with the same weights and config;
only the forward pass differs: `y = act(op(x, Q(W)) + b)`, where `Q` is
`quantize_weights` (per output channel for Conv2D and the pointwise kernel
of SeparableConv2D, per tensor for the others: the TFLite converter rejects
per-channel Dense and Conv1D kernels, whose quantized axis its transpose or
reshape would move).
"""

from keras_distill._keras import keras
from keras_distill._keras import register_serializable
from keras_distill.compression.keras3.fake_quant import FakeQuant
from keras_distill.compression.keras3.fake_quant import quantize_weights

ops = keras.ops


def _bias_and_activation(layer, outputs, bias, channels):
    if bias is not None:
        rank = len(outputs.shape)
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            shape = (1, channels) + (1,) * (rank - 2)
        else:
            shape = (1,) * (rank - 1) + (channels,)
        outputs = ops.add(outputs, ops.reshape(bias, shape))
    if layer.activation is not None:
        outputs = layer.activation(outputs)
    return outputs


@register_serializable
class QuantizedDense(keras.layers.Dense):
    """`Dense` with a per-tensor 8-bit fake-quantized kernel."""

    def call(self, inputs, training=None):
        outputs = ops.matmul(inputs, quantize_weights(self.kernel, False))
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


@register_serializable
class QuantizedEinsumDense(keras.layers.EinsumDense):
    """`EinsumDense` with a per-tensor 8-bit fake-quantized kernel."""

    def call(self, inputs, training=None):
        outputs = ops.einsum(self.equation, inputs, quantize_weights(self.kernel, False))
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


class _QuantizedConv:
    """Forward pass of Conv1D/2D with a fake-quantized kernel."""

    per_channel = True

    def call(self, inputs):
        padding = self.padding
        if padding == "causal":  # Conv1D only: pad the past, as Keras does
            left = self.dilation_rate[0] * (self.kernel_size[0] - 1)
            pads = [[0, 0], [left, 0], [0, 0]]
            if self.data_format == "channels_first":
                pads = [[0, 0], [0, 0], [left, 0]]
            inputs, padding = ops.pad(inputs, pads), "valid"
        kernel = quantize_weights(self.kernel, self.per_channel)
        outputs = ops.conv(
            inputs,
            kernel,
            strides=list(self.strides),
            padding=padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        return _bias_and_activation(self, outputs, self.bias, self.filters)


@register_serializable
class QuantizedConv1D(_QuantizedConv, keras.layers.Conv1D):
    """`Conv1D` with a per-tensor 8-bit fake-quantized kernel."""

    per_channel = False


@register_serializable
class QuantizedConv2D(_QuantizedConv, keras.layers.Conv2D):
    """`Conv2D` with a per-channel 8-bit fake-quantized kernel."""


@register_serializable
class QuantizedDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`DepthwiseConv2D` with a per-tensor 8-bit fake-quantized kernel."""

    def call(self, inputs):
        outputs = ops.depthwise_conv(
            inputs,
            quantize_weights(self.kernel, False),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        return _bias_and_activation(
            self,
            outputs,
            self.bias,
            outputs.shape[1 if self.data_format == "channels_first" else -1],
        )


@register_serializable
class QuantizedSeparableConv2D(keras.layers.SeparableConv2D):
    """`SeparableConv2D` with fake-quantized depthwise (per tensor) and pointwise kernels.

    TFLite runs it as a depthwise and a 1x1 convolution, so the tensor
    between them is fake-quantized too (`intermediate_quant`, a `FakeQuant`
    whose range variables follow the layer's own weights).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.intermediate_quant = FakeQuant(name="intermediate_quant")

    def call(self, inputs, training=None):
        hidden = ops.depthwise_conv(
            inputs,
            quantize_weights(self.depthwise_kernel, False),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        hidden = self.intermediate_quant(hidden, training=training)
        outputs = ops.conv(
            hidden,
            quantize_weights(self.pointwise_kernel),
            strides=1,
            padding="valid",
            data_format=self.data_format,
        )
        return _bias_and_activation(self, outputs, self.bias, self.filters)


QUANTIZED_CLASSES = {
    "Dense": QuantizedDense,
    "EinsumDense": QuantizedEinsumDense,
    "Conv1D": QuantizedConv1D,
    "Conv2D": QuantizedConv2D,
    "DepthwiseConv2D": QuantizedDepthwiseConv2D,
    "SeparableConv2D": QuantizedSeparableConv2D,
}
"""Float layer class name -> its fake-quantized class."""
