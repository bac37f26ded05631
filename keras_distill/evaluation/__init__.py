"""Does it help? Comparison reports, NumPy metrics, latency, sizes and plots."""

from keras_distill.evaluation import metrics
from keras_distill.evaluation import plots
from keras_distill.evaluation.latency import measure_latencies
from keras_distill.evaluation.latency import measure_latency
from keras_distill.evaluation.outputs import model_outputs
from keras_distill.evaluation.report import Report
from keras_distill.evaluation.report import compare
from keras_distill.evaluation.sizes import gzip_size

__all__ = [
    "Report",
    "compare",
    "gzip_size",
    "measure_latencies",
    "measure_latency",
    "metrics",
    "model_outputs",
    "plots",
]
