"""keras_distill: knowledge distillation for Keras and TensorFlow."""

from keras_distill import augment
from keras_distill import callbacks
from keras_distill import datasets
from keras_distill import feature_losses
from keras_distill import io
from keras_distill import losses
from keras_distill import report
from keras_distill import schedules
from keras_distill import transfer
from keras_distill.adapters import FeatureAdapter
from keras_distill.backend import GENERATION
from keras_distill.cache import TeacherCache
from keras_distill.callbacks import StopOnNonFinite
from keras_distill.chain import compress
from keras_distill.chain_report import ChainReport
from keras_distill.distiller import Distiller
from keras_distill.export import ParityError
from keras_distill.export import export_tflite
from keras_distill.export_report import ExportReport
from keras_distill.litert import run_tflite
from keras_distill.litert import tflite_latency
from keras_distill.matches import AttentionMatch
from keras_distill.matches import FeatureMatch
from keras_distill.pruning import prune
from keras_distill.pruning import weight_sparsity
from keras_distill.quantization import keras_quantize
from keras_distill.quantization import quantization_aware_training
from keras_distill.quantization import unquantizable_layers
from keras_distill.report import Report
from keras_distill.report import compare
from keras_distill.schedules import DistillationScheduler
from keras_distill.sizes import gzip_size

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
    "ParityError",
    "Report",
    "StopOnNonFinite",
    "TeacherCache",
    "augment",
    "callbacks",
    "compare",
    "compress",
    "datasets",
    "export_tflite",
    "feature_losses",
    "gzip_size",
    "io",
    "keras_quantize",
    "losses",
    "prune",
    "quantization_aware_training",
    "report",
    "run_tflite",
    "schedules",
    "tflite_latency",
    "transfer",
    "unquantizable_layers",
    "weight_sparsity",
    "__version__",
]
