"""`ExportReport`: what `export_tflite` wrote and how closely the file agrees with Keras."""

import numpy as np

from keras_distill.evaluation._tables import JsonReport

_ROWS = (
    ("path", "file", "{}"),
    ("quantization", "quantization", "{}"),
    ("file_size_bytes", "size bytes", "{:,}"),
    ("input_dtype", "input dtype", "{}"),
    ("output_dtype", "output dtype", "{}"),
    ("num_samples", "samples compared", "{:,}"),
    ("max_abs_diff", "max |keras - tflite|", "{:.6g}"),
    ("top1_agreement", "top-1 agreement", "{:.4f}"),
    ("passed", "within thresholds", "{}"),
)


class ExportReport(JsonReport):
    """The parity report of one `.tflite` export.

    `print(report)` shows a table; `report.to_json()` and
    `report.save_json(path)` give every field. The two output arrays the
    numbers come from are kept (not serialized) as `keras_outputs` and
    `tflite_outputs`, so they can be checked independently.

    A model with several outputs gives dicts of arrays by output name; every
    output is compared: `max_abs_diff` is the largest over the outputs,
    `top1_agreement` the smallest over those with a class axis, and
    `per_output` holds each output's own numbers.

    Args:
        path: Path of the `.tflite` file.
        quantization: `None`, `"dynamic"`, `"float16"` or `"int8"`.
        file_size_bytes: Size of the file.
        input_dtype: Dtype name of the file's input tensor.
        output_dtype: Dtype name of the file's output tensor.
        keras_outputs: `(n, ...)` outputs of the Keras model, or a dict of
            them by output name.
        tflite_outputs: `(n, ...)` outputs of the file (dequantized), or a
            dict of them by output name.
        max_abs_diff_threshold: Largest allowed `max_abs_diff`, or `None`.
        min_top1_agreement: Smallest allowed `top1_agreement`, or `None`.
        generation: Keras generation that exported the file.

    Example:
        ```python
        report = export_tflite(student, "student.tflite")
        print(report)
        report.save_json("student.parity.json")
        ```
    """

    def __init__(
        self,
        path,
        quantization,
        file_size_bytes,
        input_dtype,
        output_dtype,
        keras_outputs,
        tflite_outputs,
        max_abs_diff_threshold=None,
        min_top1_agreement=None,
        generation=None,
    ):
        self.path = str(path)
        self.quantization = quantization
        self.file_size_bytes = int(file_size_bytes)
        self.input_dtype = str(input_dtype)
        self.output_dtype = str(output_dtype)
        self.keras_outputs = _float_arrays(keras_outputs)
        self.tflite_outputs = _float_arrays(tflite_outputs)
        self.max_abs_diff_threshold = max_abs_diff_threshold
        self.min_top1_agreement = min_top1_agreement
        self.generation = generation
        keras_by_name, tflite_by_name = _by_name(self.keras_outputs), _by_name(self.tflite_outputs)
        if sorted(keras_by_name) != sorted(tflite_by_name):
            raise ValueError(
                "The Keras model and the .tflite file must have the same outputs. Received: "
                f"keras_outputs {sorted(keras_by_name)}, tflite_outputs {sorted(tflite_by_name)}"
            )
        self.per_output = {
            name: _compare(keras_by_name[name], tflite_by_name[name]) for name in keras_by_name
        }
        self.num_samples = int(next(iter(keras_by_name.values())).shape[0])
        self.max_abs_diff = max(stats["max_abs_diff"] for stats in self.per_output.values())
        agreements = [
            stats["top1_agreement"]
            for stats in self.per_output.values()
            if stats["top1_agreement"] is not None
        ]
        self.top1_agreement = min(agreements) if agreements else None

    @property
    def failures(self):
        """Human-readable list of the thresholds this export breaks."""
        failures = []
        if self.max_abs_diff_threshold is not None and not (
            self.max_abs_diff <= self.max_abs_diff_threshold
        ):
            failures.append(
                f"max_abs_diff={self.max_abs_diff:.6g} > "
                f"max_abs_diff_threshold={self.max_abs_diff_threshold}"
            )
        if (
            self.min_top1_agreement is not None
            and self.top1_agreement is not None
            and self.top1_agreement < self.min_top1_agreement
        ):
            failures.append(
                f"top1_agreement={self.top1_agreement:.4f} < "
                f"min_top1_agreement={self.min_top1_agreement}"
            )
        return failures

    @property
    def passed(self):
        """`True` when every threshold given holds."""
        return not self.failures

    def to_dict(self):
        """Every field as JSON-compatible values (the output arrays excluded)."""
        return {
            "path": self.path,
            "quantization": self.quantization,
            "file_size_bytes": self.file_size_bytes,
            "input_dtype": self.input_dtype,
            "output_dtype": self.output_dtype,
            "num_samples": self.num_samples,
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
            "max_abs_diff_threshold": self.max_abs_diff_threshold,
            "min_top1_agreement": self.min_top1_agreement,
            "passed": self.passed,
            "generation": self.generation,
            "per_output": self.per_output,
        }

    def __str__(self):
        values = self.to_dict()
        lines = []
        for key, label, fmt in _ROWS:
            value = values[key]
            lines.append((label, "n/a" if value is None else fmt.format(value)))
        if len(self.per_output) > 1:
            for name, stats in self.per_output.items():
                agreement = stats["top1_agreement"]
                lines.append(
                    (
                        f"output {name}",
                        f"max diff {stats['max_abs_diff']:.6g}, top-1 "
                        + ("n/a" if agreement is None else f"{agreement:.4f}"),
                    )
                )
        width = max(len(label) for label, _ in lines)
        body = "\n".join(f"{label:<{width}}  {value}" for label, value in lines)
        return f"TFLite export\n{body}"

    def __repr__(self):
        return (
            f"ExportReport(path={self.path!r}, quantization={self.quantization!r}, "
            f"file_size_bytes={self.file_size_bytes}, max_abs_diff={self.max_abs_diff:.6g}, "
            f"top1_agreement={self.top1_agreement})"
        )


def _float_arrays(outputs):
    if isinstance(outputs, dict):
        return {name: np.asarray(value, dtype=np.float32) for name, value in outputs.items()}
    return np.asarray(outputs, dtype=np.float32)


def _by_name(outputs):
    return outputs if isinstance(outputs, dict) else {"output": outputs}


def _compare(keras_output, tflite_output):
    """`max_abs_diff` and `top1_agreement` (None without a class axis) of one output."""
    difference = np.abs(keras_output - tflite_output)
    agreement = None
    if keras_output.ndim >= 2 and keras_output.shape[-1] > 1:
        agreement = float(np.mean(keras_output.argmax(-1) == tflite_output.argmax(-1)))
    return {
        "max_abs_diff": float(difference.max()) if difference.size else 0.0,
        "top1_agreement": agreement,
    }
