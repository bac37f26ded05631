"""keras_distill: knowledge distillation for Keras and TensorFlow."""

from keras_distill import datasets
from keras_distill import losses
from keras_distill.backend import GENERATION
from keras_distill.distiller import Distiller

__version__ = "0.1.0"

__all__ = [
    "Distiller",
    "GENERATION",
    "datasets",
    "losses",
    "__version__",
]
