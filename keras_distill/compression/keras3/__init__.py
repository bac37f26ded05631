"""Pruning and quantization-aware training for Keras 3, without tensorflow-model-optimization.

`prune` and `quantization_aware_training` in `keras_distill.compression` call
these modules when the active generation is Keras 3, and tfmot on tf_keras.
"""

from keras_distill.compression.keras3.schedules import ConstantSparsity
from keras_distill.compression.keras3.schedules import PolynomialDecay

__all__ = ["ConstantSparsity", "PolynomialDecay"]
