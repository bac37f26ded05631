"""Compare a teacher and its students: size, accuracy, agreement, calibration, speed."""

import json
import os
import tempfile

import numpy as np

from keras_distill._checks import check_int
from keras_distill._checks import check_keras_model
from keras_distill._keras import GENERATION
from keras_distill._keras import KERAS_VERSION
from keras_distill.evaluation import metrics
from keras_distill.evaluation import plots
from keras_distill.evaluation._tables import JsonReport
from keras_distill.evaluation._tables import markdown_table
from keras_distill.evaluation.latency import measure_latencies
from keras_distill.evaluation.outputs import model_outputs
from keras_distill.evaluation.sizes import parameter_count

COLUMNS = (
    ("name", "model", "{}"),
    ("parameters", "params", "{:,}"),
    ("file_size_bytes", "size KiB", "{:.1f}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("agreement", "agreement", "{:.4f}"),
    ("ece", "ECE", "{:.4f}"),
    ("latency_ms", "latency ms", "{}"),
)


class Report(JsonReport):
    """What `compare()` measured: one row per model, the settings, and optionally a history.

    Each row is a dict with `name`, `model` (the Keras model's name),
    `parameters`, `file_size_bytes` (the `.keras` file without optimizer
    state), `accuracy`,
    `agreement` (top-1 agreement with the teacher), `ece` (expected
    calibration error, 15 equal-width bins unless set otherwise), and
    `latency` (`{"batch_<b>": {"min_ms", "median_ms", ...}}`).

    `print(report)` shows a table; `to_json()`/`save_json()` write all of it;
    `plot_accuracy_vs_size()` and `plot_history()` draw PNGs.

    Args:
        rows: List of row dicts, as above.
        settings: Dict of how the numbers were measured.
        history: Optional `fit()` history (object or dict) to plot.
    """

    def __init__(self, rows, settings, history=None):
        self.rows = list(rows)
        self.settings = dict(settings)
        self.history = None if history is None else plots.history_dict(history)

    def __getitem__(self, name):
        for row in self.rows:
            if row["name"] == name:
                return row
        raise KeyError(
            f"No model {name!r} in the report. Existing: {[r['name'] for r in self.rows]}"
        )

    def to_dict(self):
        return {"settings": self.settings, "models": self.rows, "history": self.history}

    @classmethod
    def from_json(cls, text):
        """Rebuilds a report from `to_json()` output."""
        data = json.loads(text)
        return cls(data["models"], data["settings"], data.get("history"))

    def to_markdown(self):
        """A Markdown table: one line per model; latency is the fastest call, in ms, per batch size.

        The fastest of the alternated calls is the steadiest figure on a
        shared machine; the median is in `rows` and `to_json()`.
        """
        header = [title for _, title, _ in COLUMNS]
        lines = []
        for row in self.rows:
            cells = []
            for key, _, fmt in COLUMNS:
                value = row.get(key)
                if key == "file_size_bytes" and value is not None:
                    value = value / 1024.0
                if key == "latency_ms":
                    value = (
                        " / ".join(
                            f"b{item['batch_size']}: {item['min_ms']:.2f}"
                            for item in row.get("latency", {}).values()
                        )
                        or "-"
                    )
                cells.append("-" if value is None else fmt.format(value))
            lines.append(cells)
        return markdown_table(header, lines)

    to_table = to_markdown

    def __str__(self):
        settings = self.settings
        return (
            f"{self.to_markdown()}\n"
            f"{settings['num_examples']} examples; agreement = top-1 agreement with the teacher; "
            f"ECE with {settings['num_bins']} equal-width bins; latency = fastest of "
            f"{settings['latency_repeats']} warmed-up calls, models alternated "
            f"({settings['generation']})."
        )

    def __repr__(self):
        return f"Report(models={[row['name'] for row in self.rows]})"

    def plot_accuracy_vs_size(self, path, size_key="file_size_bytes"):
        """PNG of accuracy against `.keras` file size (or `size_key="parameters"`)."""
        return plots.plot_accuracy_vs_size(
            self.rows, path, size_key=size_key, title="accuracy against size"
        )

    def plot_history(self, path, keys=None):
        """PNG of every loss component and metric of the attached `fit()` history."""
        if self.history is None:
            raise ValueError(
                "This report has no training history; pass `history=` to `compare()`. "
                "Received: history=None"
            )
        return plots.plot_history(self.history, path, keys=keys, title="training curves")


def compare(
    teacher,
    student,
    x,
    y,
    others=None,
    batch_size=256,
    latency_batch_sizes=(1, 64),
    latency_repeats=9,
    num_bins=metrics.DEFAULT_NUM_BINS,
    from_logits=True,
    history=None,
    student_name="student",
):
    """Measures a teacher, a student and any other models on the same `(x, y)`.

    For each model: parameter count, size of its saved `.keras` file,
    accuracy, top-1 agreement with the teacher (the fraction of examples on
    which both predict the same class; 1 for the teacher), expected
    calibration error (ECE, `metrics.expected_calibration_error`: top-1
    confidence, `num_bins` equal-width bins, Guo et al. 2017), and
    inference latency (`latency.measure_latencies`: minimum and median of
    `latency_repeats` warmed-up calls at each of `latency_batch_sizes`, the
    models timed in turn so that identical models time alike).

    Args:
        teacher: The teacher `keras.Model`.
        student: The student `keras.Model` (e.g. `distiller.student`).
        x: Inputs (a NumPy array, or a dict/list of arrays).
        y: `(n,)` integer labels.
        others: Optional `{name: keras.Model}` of further models, e.g. the
            student trained alone. Defaults to none.
        batch_size: Rows per model call when computing the outputs.
            Defaults to `256`.
        latency_batch_sizes: Batch sizes to time. Defaults to `(1, 64)`.
        latency_repeats: Timed calls per batch size; `0` skips timing.
            Defaults to `9`.
        num_bins: Bins of the ECE. Defaults to `15`.
        from_logits: Whether the models output logits (`True`) or
            probabilities. Defaults to `True`.
        history: Optional `fit()` history to keep in the report for
            `Report.plot_history`. Defaults to none.
        student_name: Name of the student's row, e.g. `"student (distilled)"`.
            Defaults to `"student"`.

    Returns:
        A `Report`.

    Example:
        ```python
        report = compare(teacher, distiller.student, x_test, y_test,
                         others={"student alone": alone}, history=history)
        print(report)
        report.save_json("outputs/report.json")
        report.plot_accuracy_vs_size("outputs/accuracy_vs_size.png")
        report.plot_history("outputs/history.png")
        ```

    References:
        Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
        Networks", ICML 2017. https://arxiv.org/abs/1706.04599
    """
    num_bins = metrics.check_num_bins(num_bins)
    if not isinstance(student_name, str) or student_name in ("", "teacher"):
        raise ValueError(
            "`student_name` must be a non-empty string other than 'teacher'. "
            f"Received: student_name={student_name!r}"
        )
    models = {"teacher": teacher, student_name: student}
    for name, model in dict(others or {}).items():
        if name in models:
            raise ValueError(
                f"`others` must not reuse the names 'teacher' or {student_name!r}. Received: "
                f"others with key {name!r}"
            )
        models[str(name)] = model
    for name, model in models.items():
        check_keras_model(name, model)
    check_int("latency_repeats", latency_repeats, minimum=0)
    labels = np.asarray(y).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(
            f"`y` must hold one label per example of `x` ({len(x)}). Received: "
            f"y.shape={np.shape(y)}"
        )
    outputs = {name: model_outputs(model, x, batch_size) for name, model in models.items()}
    latency = {name: {} for name in models}
    for size in latency_batch_sizes if latency_repeats else ():
        timed = measure_latencies(models, x, batch_size=size, repeats=latency_repeats)
        for name, result in timed.items():
            latency[name][f"batch_{size}"] = result
    rows = []
    for name, model in models.items():
        probabilities = metrics.softmax(outputs[name]) if from_logits else outputs[name]
        rows.append(
            {
                "name": name,
                "model": model.name,
                "parameters": parameter_count(model),
                "file_size_bytes": saved_size(model),
                "accuracy": metrics.accuracy(outputs[name], labels),
                "agreement": metrics.top1_agreement(outputs[name], outputs["teacher"]),
                "ece": metrics.expected_calibration_error(probabilities, labels, num_bins),
                "latency": latency[name],
            }
        )
    settings = {
        "num_examples": int(len(labels)),
        "num_bins": num_bins,
        "latency_batch_sizes": [int(b) for b in latency_batch_sizes] if latency_repeats else [],
        "latency_repeats": int(latency_repeats),
        "from_logits": bool(from_logits),
        "generation": GENERATION,
        "keras_version": KERAS_VERSION,
    }
    return Report(rows, settings, history=history)


def saved_size(model):
    """Size in bytes of `model` saved as a `.keras` file, without optimizer state.

    The model is cloned uncompiled (same config and weights) before saving,
    so a model that was trained with `compile`/`fit` and one that was
    trained inside a `Distiller` compare on equal terms: the size is what
    ships. Models that cannot be cloned are saved as they are.
    """
    try:
        # Rebuilt from its config: `clone_model` of a compiled Keras 3 model keeps the optimizer.
        clone = type(model).from_config(model.get_config())
        clone.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001 - subclassed models may not rebuild from config
        clone = model
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        clone.save(path)
        return int(os.path.getsize(path))
