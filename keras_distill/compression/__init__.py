"""From student to phone: TFLite export, LiteRT, pruning, quantization and the chain of them."""

from keras_distill.compression.budget import search_budget
from keras_distill.compression.chain import compress
from keras_distill.compression.chain_report import ChainReport
from keras_distill.compression.channels import channel_matches
from keras_distill.compression.channels import prune_channels
from keras_distill.compression.channels import recover_channels
from keras_distill.compression.export import ParityError
from keras_distill.compression.export import export_tflite
from keras_distill.compression.export_report import ExportReport
from keras_distill.compression.generation_export import export_generation_tflite
from keras_distill.compression.litert import run_tflite
from keras_distill.compression.litert import tflite_latency
from keras_distill.compression.pruning import prune
from keras_distill.compression.pruning import weight_sparsity
from keras_distill.compression.quantization import keras_quantize
from keras_distill.compression.quantization import quantization_aware_training
from keras_distill.compression.quantization import unquantizable_layers
from keras_distill.compression.tflite_generator import TFLiteGenerator

__all__ = [
    "ChainReport",
    "ExportReport",
    "ParityError",
    "TFLiteGenerator",
    "channel_matches",
    "compress",
    "export_generation_tflite",
    "export_tflite",
    "keras_quantize",
    "prune",
    "prune_channels",
    "quantization_aware_training",
    "recover_channels",
    "run_tflite",
    "search_budget",
    "tflite_latency",
    "unquantizable_layers",
    "weight_sparsity",
]
