"""The real `.tflite` file of a compression stage, run through LiteRT and measured."""

import numpy as np

from keras_distill.compression.litert import load_interpreter
from keras_distill.compression.litert import run_tflite
from keras_distill.compression.litert import tflite_latency

THREADS = (1, 2)
"""LiteRT interpreter threads the latency is measured with."""


def tflite_ops(path):
    """The operator names of a `.tflite` file, in execution order (custom ops by their code).

    Reads `Interpreter._get_ops_details()` of ai_edge_litert (2.3), the
    interpreter's only listing of its operators.
    """
    interpreter = load_interpreter(path)
    return [str(op["op_name"]) for op in interpreter._get_ops_details()]


def check_file(path, x, y, teacher_outputs=None, threads=THREADS, repeats=9):
    """Runs `path` on `x` with LiteRT: accuracy, teacher agreement, operators and latency.

    Args:
        path: A `.tflite` file with one input and one output (logits).
        x: Held-out inputs.
        y: Their integer labels.
        teacher_outputs: The teacher's outputs on `x`, or `None`.
        threads: Interpreter thread counts to time. Defaults to `(1, 2)`.
        repeats: Timed calls per thread count, after 3 warm-up calls;
            the minimum is kept. Defaults to `9`.

    Returns:
        `{"file_accuracy", "file_teacher_agreement" (None without a
        teacher), "ops" (the distinct operator names, sorted), "flex_ops"
        (those that need the Flex delegate: TensorFlow ops, which plain
        LiteRT cannot run), "latency_ms_threads" ({threads: ms})}`.
    """
    top1 = np.asarray(run_tflite(path, x)).argmax(-1)
    agreement = None
    if teacher_outputs is not None:
        agreement = float(np.mean(top1 == np.asarray(teacher_outputs).argmax(-1)))
    ops = sorted(set(tflite_ops(path)))
    return {
        "file_accuracy": float(np.mean(top1 == np.asarray(y))),
        "file_teacher_agreement": agreement,
        "ops": ops,
        "flex_ops": [op for op in ops if op.startswith("Flex")],
        "latency_ms_threads": {
            str(count): tflite_latency(path, x, repeats=repeats, warmup=3, num_threads=count)[
                "min_ms"
            ]
            for count in threads
        },
    }
