"""8-bit fake quantization: weights (symmetric, per channel) and activations (learned ranges).

Both go through TensorFlow's `FakeQuantWithMinMaxVars` ops, which the TFLite
converter turns into real int8 tensors. The op maps `x` to

    scale = (max - min) / (2**bits - 1 - narrow)
    q = round((clip(x, min', max') - min') / scale);  x_hat = q * scale + min'

where `min'`, `max'` are `min`, `max` nudged so that 0 is exactly
representable; gradients pass straight through inside the range and are 0
outside it.

References:
    Jacob et al., "Quantization and Training of Neural Networks for
    Efficient Integer-Arithmetic-Only Inference", 2018.
    https://arxiv.org/abs/1712.05877
"""

import tensorflow as tf

from keras_distill._keras import keras
from keras_distill._keras import register_serializable

NUM_BITS = 8
_EPSILON = 1e-6


def quantize_weights(kernel, per_channel=True):
    """Symmetric 8-bit fake quantization of a kernel, over its last axis or as a whole.

    The range of channel `c` is `[-m_c, m_c]` with `m_c = max |w[..., c]|`
    (narrow range: 254 steps of `m_c / 127`, zero point 0, as TFLite's int8
    weights), so zero weights stay exactly zero.

    Args:
        kernel: The float kernel.
        per_channel: One range per output channel (last axis), else one
            for the whole kernel. Defaults to `True`.

    Returns:
        The fake-quantized kernel, same shape and dtype.
    """
    kernel = tf.convert_to_tensor(kernel)
    values = tf.cast(kernel, tf.float32)
    axes = list(range(len(values.shape) - 1)) if per_channel else None
    bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(values), axis=axes), _EPSILON))
    if per_channel:
        quantized = tf.quantization.fake_quant_with_min_max_vars_per_channel(
            values, -bound, bound, num_bits=NUM_BITS, narrow_range=True
        )
    else:
        quantized = tf.quantization.fake_quant_with_min_max_vars(
            values, -bound, bound, num_bits=NUM_BITS, narrow_range=True
        )
    return tf.cast(quantized, kernel.dtype)


@register_serializable
class FakeQuant(keras.layers.Layer):
    """Fake-quantizes activations to 8 bits over a range learned while training.

    While training, the range follows the batches: the first batch sets it,
    then `min <- d * min + (1 - d) * min(batch_min, 0)` (same for `max`),
    with `d = ema_decay`; at inference the stored range is used. The range
    always contains 0. The layer computes in float32 (also under a mixed
    precision policy), as the int8 tensors it stands for are float32 in
    the converter.

    Args:
        ema_decay: Decay of the moving averages. Defaults to `0.99`.
        **kwargs: Base `Layer` arguments (`name`, ...).

    Example:
        ```python
        outputs = FakeQuant(name="logits_quant")(logits)
        ```
    """

    def __init__(self, ema_decay=0.99, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.ema_decay = float(ema_decay)

    def build(self, input_shape):
        self.range_min = self.add_weight(
            name="range_min", shape=(), initializer="zeros", trainable=False
        )
        self.range_max = self.add_weight(
            name="range_max", shape=(), initializer="zeros", trainable=False
        )
        self.calibrated = self.add_weight(
            name="calibrated", shape=(), initializer="zeros", trainable=False
        )

    def call(self, inputs, training=None):
        values = tf.cast(inputs, tf.float32)
        low, high = self.range_min, self.range_max
        if training:
            batch_min = tf.minimum(tf.reduce_min(values), 0.0)
            batch_max = tf.maximum(tf.reduce_max(values), 0.0)
            started = tf.cast(self.calibrated, tf.float32)
            decay = self.ema_decay * started
            low = decay * self.range_min + (1.0 - decay) * batch_min
            high = decay * self.range_max + (1.0 - decay) * batch_max
            self.range_min.assign(low)
            self.range_max.assign(high)
            self.calibrated.assign(1.0)
        high = tf.maximum(high, low + _EPSILON)
        outputs = tf.quantization.fake_quant_with_min_max_vars(values, low, high, num_bits=NUM_BITS)
        return tf.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["ema_decay"] = self.ema_decay
        return config
