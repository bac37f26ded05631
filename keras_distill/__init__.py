"""keras_distill: knowledge distillation for Keras and TensorFlow.

The distiller and its losses live at the top; each folder is one concern:
`matching` (feature and attention matches), `teachers` (live teacher or cache),
`compression` (TFLite export, pruning, quantization, the chain), `evaluation`
(reports, metrics, latency, plots), `data` (augmentation, transfer sets,
offline datasets) and `recipe` (`distill()`, the safe path in one call).
"""

import warnings

from keras_distill import callbacks
from keras_distill import compression
from keras_distill import data
from keras_distill import evaluation
from keras_distill import losses
from keras_distill import matching
from keras_distill import recipe
from keras_distill import saving
from keras_distill import schedules
from keras_distill import teachers
from keras_distill._keras import GENERATION
from keras_distill._keras import keras
from keras_distill.callbacks import StopOnNonFinite
from keras_distill.chunked import chunked_distillation_loss
from keras_distill.compression import ChainReport
from keras_distill.compression import ExportReport
from keras_distill.compression import ParityError
from keras_distill.compression import compress
from keras_distill.compression import export_tflite
from keras_distill.compression import keras_quantize
from keras_distill.compression import prune
from keras_distill.compression import prune_channels
from keras_distill.compression import quantization_aware_training
from keras_distill.compression import recover_channels
from keras_distill.compression import run_tflite
from keras_distill.compression import tflite_latency
from keras_distill.compression import unquantizable_layers
from keras_distill.compression import weight_sparsity
from keras_distill.data import augment
from keras_distill.data import datasets
from keras_distill.data import transfer
from keras_distill.distiller import Distiller
from keras_distill.evaluation import Report
from keras_distill.evaluation import compare
from keras_distill.evaluation import gzip_size
from keras_distill.evaluation import report
from keras_distill.matching import AttentionMatch
from keras_distill.matching import FeatureAdapter
from keras_distill.matching import FeatureMatch
from keras_distill.matching import feature_losses
from keras_distill.on_policy import OnPolicyDistiller
from keras_distill.recipe import RecipeReport
from keras_distill.recipe import distill
from keras_distill.schedules import DistillationScheduler
from keras_distill.teachers import ShardedTeacherCache
from keras_distill.teachers import TeacherCache

__version__ = "0.1.0"

__all__ = [
    "AttentionMatch",
    "ChainReport",
    "DistillationScheduler",
    "Distiller",
    "ExportReport",
    "FeatureAdapter",
    "FeatureMatch",
    "GENERATION",
    "OnPolicyDistiller",
    "ParityError",
    "RecipeReport",
    "Report",
    "ShardedTeacherCache",
    "StopOnNonFinite",
    "TeacherCache",
    "augment",
    "callbacks",
    "chunked_distillation_loss",
    "compare",
    "compress",
    "compression",
    "data",
    "datasets",
    "distill",
    "evaluation",
    "export_tflite",
    "feature_losses",
    "gzip_size",
    "keras",
    "keras_quantize",
    "losses",
    "matching",
    "prune",
    "prune_channels",
    "quantization_aware_training",
    "recipe",
    "recover_channels",
    "report",
    "run_tflite",
    "saving",
    "schedules",
    "teachers",
    "tflite_latency",
    "transfer",
    "unquantizable_layers",
    "weight_sparsity",
    "__version__",
]


_DEPRECATED_MODULES = {"io": ("saving", saving)}


def __getattr__(name):
    """Old names kept for one release: `keras_distill.io` is now `keras_distill.saving`."""
    if name in _DEPRECATED_MODULES:
        new_name, module = _DEPRECATED_MODULES[name]
        warnings.warn(
            f"`keras_distill.{name}` is deprecated and will be removed in the next release; "
            f"use `keras_distill.{new_name}`.",
            DeprecationWarning,
            stacklevel=2,
        )
        return module
    raise AttributeError(f"module 'keras_distill' has no attribute {name!r}")
