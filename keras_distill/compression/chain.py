"""`compress`: distil -> prune -> QAT -> int8 `.tflite` in one call, measured per stage."""

import os

import numpy as np

from keras_distill import _checks
from keras_distill._clone import clone_with_weights
from keras_distill._keras import GENERATION
from keras_distill._options import TrainingOptions
from keras_distill.compression import _training
from keras_distill.compression._training import steps_per_epoch
from keras_distill.compression.chain_report import ChainReport
from keras_distill.compression.export import export_tflite
from keras_distill.compression.file_check import check_file
from keras_distill.compression.litert import run_tflite
from keras_distill.compression.pruning import check_prune_settings
from keras_distill.compression.pruning import prune_with_options
from keras_distill.compression.pruning import schedule_steps
from keras_distill.compression.pruning import weight_sparsity
from keras_distill.compression.quantization import check_qat_settings
from keras_distill.compression.quantization import qat_with_options
from keras_distill.evaluation.outputs import model_outputs
from keras_distill.evaluation.sizes import gzip_size
from keras_distill.evaluation.sizes import parameter_count

STAGES = ("distill", "prune", "qat", "tflite")


def compress(
    student,
    x_train,
    y_train,
    x_test,
    y_test,
    teacher=None,
    stages=STAGES,
    output_dir="compressed",
    distill_epochs=5,
    prune_epochs=3,
    qat_epochs=1,
    target_sparsity=0.8,
    batch_size=32,
    learning_rate=1e-3,
    alpha=0.5,
    temperature=4.0,
    keep_float=False,
    int8_io=False,
    representative_samples=200,
    plot=True,
    verbose=0,
    max_accuracy_drop=None,
):
    """Runs the compression chain on a copy of `student` and reports every stage.

    Stages, in this order, each optional:
    - `"distill"`: train with the `Distiller` from `teacher`.
    - `"prune"`: distillation-aware magnitude pruning to `target_sparsity`.
    - `"qat"`: distillation-aware quantization-aware training (keeps the
      pruned zeros).
    - `"tflite"`: full-integer int8 `.tflite` (calibrated on `x_train`
      unless the model went through QAT), checked with LiteRT.

    Every stage's settings are checked before `output_dir` is made or any
    stage trains. The first row, `"input"`, measures the student as given. Each Keras stage
    is also exported as a float32 `.tflite` to measure its size, gzip size
    and LiteRT latency. The pruning and QAT stages use the teacher when
    there is one. The report is saved as `chain_report.json` (and
    `chain_report.png` when `plot`) in `output_dir`, beside the files.

    All four stages run on both generations: pruning and QAT use
    tensorflow-model-optimization on tf_keras and this package's own
    implementation on Keras 3 (see `prune` and
    `quantization_aware_training`); `settings["generation"]` in the report
    says which ran.

    Args:
        student: Built `keras.Model` (logits out). Not modified.
        x_train: Training inputs (array).
        y_train: Integer training labels.
        x_test: Test inputs (array).
        y_test: Integer test labels.
        teacher: Trained `keras.Model`. Required by `"distill"`; optional
            for the other stages. Defaults to `None`.
        stages: Subset of `("distill", "prune", "qat", "tflite")`.
            Defaults to all four.
        output_dir: Folder of the files and the report. Defaults to
            `"compressed"`.
        distill_epochs: Epochs of `"distill"`. Defaults to `5`.
        prune_epochs: Epochs of `"prune"`. Defaults to `3`.
        qat_epochs: Epochs of `"qat"`. Defaults to `1`.
        target_sparsity: Sparsity of `"prune"`. Defaults to `0.8`.
        batch_size: Batch size. Defaults to `32`.
        learning_rate: Adam learning rate of every stage. Defaults to `1e-3`.
        alpha: Distiller weight of the distillation term. Defaults to `0.5`.
        temperature: Distiller temperature. Defaults to `4.0`.
        keep_float: Keep layers the QAT scheme cannot quantize in float32.
            Defaults to `False`.
        int8_io: int8 input and output tensors in the final file. Defaults
            to `False`.
        representative_samples: Calibration rows for `"tflite"`. Defaults
            to `200`.
        plot: Also draw `chain_report.png` (needs matplotlib). Defaults to
            `True`.
        verbose: As for `fit()`. Defaults to `0`.
        max_accuracy_drop: Largest accuracy loss (a fraction, e.g. `0.01`
            for one point) a stage may cause before it is rolled back.
            Defaults to `None` (never roll back).

    Returns:
        A `ChainReport`; `report.models` holds each stage's Keras model.

    Example:
        ```python
        report = compress(student, x_train, y_train, x_test, y_test,
                          teacher=teacher, output_dir="out")
        print(report)
        ```

    References:
        Han, Mao & Dally, "Deep Compression: Compressing Deep Neural Networks
        with Pruning, Trained Quantization and Huffman Coding", 2016.
        https://arxiv.org/abs/1510.00149
    """
    stages = _check_stages(stages)
    if "distill" in stages and teacher is None:
        raise ValueError(
            "The 'distill' stage needs a trained `teacher`. Pass `teacher=` or leave "
            f"'distill' out of `stages`. Received: teacher=None, stages={list(stages)}"
        )
    # Every stage's settings are checked here, before any folder is made or any model trains.
    base = TrainingOptions(
        batch_size=batch_size,
        learning_rate=learning_rate,
        alpha=alpha,
        temperature=temperature,
        verbose=verbose,
    )
    epochs = {"distill": distill_epochs, "prune": prune_epochs, "qat": qat_epochs}
    options = {stage: base.replace(epochs=epochs[stage]) for stage in stages if stage in epochs}
    if "prune" in stages:
        check_prune_settings(target_sparsity)
        schedule_steps(steps_per_epoch(x_train, batch_size) * options["prune"].epochs)
    if "qat" in stages:
        check_qat_settings(keep_float)
    int8_io = _checks.check_bool("int8_io", int8_io)
    representative_samples = _checks.check_int("representative_samples", representative_samples)
    plot = _checks.check_bool("plot", plot)
    if max_accuracy_drop is not None:
        max_accuracy_drop = _checks.check_number("max_accuracy_drop", max_accuracy_drop, minimum=0)
        max_accuracy_drop = float(max_accuracy_drop)
    _checks.check_output_folder("output_dir", output_dir)
    settings = {
        "generation": GENERATION,
        "stages": list(stages),
        "distill_epochs": distill_epochs,
        "prune_epochs": prune_epochs,
        "qat_epochs": qat_epochs,
        "target_sparsity": target_sparsity,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "alpha": alpha,
        "temperature": temperature,
        "keep_float": keep_float,
        "int8_io": int8_io,
        "representative_samples": representative_samples,
        "num_train": int(len(x_train)),
        "num_test": int(len(x_test)),
        "latency": "LiteRT invoke(), batch 1, 1 and 2 threads, minimum of 9 after 3 warm-up calls",
        "max_accuracy_drop": max_accuracy_drop,
    }
    os.makedirs(output_dir, exist_ok=True)
    chain = _Chain(
        student,
        teacher,
        (x_train, y_train),
        (x_test, y_test),
        options,
        output_dir,
        target_sparsity=target_sparsity,
        keep_float=keep_float,
        int8_io=int8_io,
        representative_samples=representative_samples,
        max_accuracy_drop=max_accuracy_drop,
    )
    for stage in stages:
        chain.run(stage)
    report = ChainReport(
        chain.rows, settings, models=chain.models, export_report=chain.export_report
    )
    report.save_json(os.path.join(output_dir, "chain_report.json"))
    if plot:
        report.plot(os.path.join(output_dir, "chain_report.png"))
    return report


class _Chain:
    """The model as it goes through the stages, with one measured row per stage.

    Every stage starts from the previous stage's model; the teacher (when
    given) guides each training stage.

    Args:
        student, teacher: As in `compress`.
        train, test: `(x, y)` pairs.
        options: `{stage: TrainingOptions}` of the training stages.
        output_dir: Folder of the files.
        target_sparsity, keep_float, int8_io, representative_samples,
            max_accuracy_drop: As in `compress`.
    """

    def __init__(
        self,
        student,
        teacher,
        train,
        test,
        options,
        output_dir,
        *,
        target_sparsity,
        keep_float,
        int8_io,
        representative_samples,
        max_accuracy_drop=None,
    ):
        self.teacher = teacher
        self.max_accuracy_drop = max_accuracy_drop
        self.x_train, self.y_train = train
        self.options = options
        self.output_dir = output_dir
        self.target_sparsity = target_sparsity
        self.keep_float = keep_float
        self.int8_io = int8_io
        self.representative_samples = representative_samples
        x_test = np.asarray(test[0], dtype=np.float32)
        teacher_outputs = None if teacher is None else _outputs(teacher, x_test)
        self.measure = _Measure(x_test, np.asarray(test[1]), teacher_outputs, output_dir)
        self.model = clone_with_weights(student, "student")
        self.models = {"input": self.model}
        self.rows = [self.measure.keras_row("input", self.model)]
        self.export_report = None

    def run(self, stage):
        """Runs one of `STAGES` on the current model and measures the result."""
        {"distill": self.distill, "prune": self.prune, "qat": self.qat, "tflite": self.tflite}[
            stage
        ]()

    def _keep(self, stage, model, export=True):
        row = self.measure.keras_row(stage, model, export=export)
        self.rows.append(row)
        if not self._rolled_back(row):
            self.model = model
            self.models[stage] = model

    def _rolled_back(self, row):
        """Marks `row` rolled back when it lost more than `max_accuracy_drop`."""
        limit = self.max_accuracy_drop
        kept = [r for r in self.rows[:-1] if not r.get("rolled_back")][-1]
        drop = _accuracy(kept) - _accuracy(row)
        row["rolled_back"] = limit is not None and drop > limit
        return row["rolled_back"]

    def distill(self):
        model = clone_with_weights(self.model, "model")
        _training.fit(model, self.x_train, self.y_train, self.teacher, self.options["distill"])
        self._keep("distill", model)

    def prune(self):
        model = prune_with_options(
            self.model,
            self.x_train,
            self.y_train,
            self.teacher,
            self.options["prune"],
            target_sparsity=self.target_sparsity,
        )
        self._keep("prune", model)

    def qat(self):
        model = qat_with_options(
            self.model,
            self.x_train,
            self.y_train,
            self.teacher,
            self.options["qat"],
            keep_float=self.keep_float,
        )
        self._keep("qat", model, export=False)

    def tflite(self):
        path = os.path.join(self.output_dir, "tflite.tflite")
        representative = None
        if "qat" not in self.models:
            representative = np.asarray(self.x_train)[: self.representative_samples]
        self.export_report = export_tflite(
            self.model,
            path,
            quantization="int8",
            representative_data=representative,
            int8_io=self.int8_io,
            sample_inputs=self.measure.x,
        )
        row = self.measure.file_row("tflite", path, self.model)
        row["parity_max_abs_diff"] = self.export_report.max_abs_diff
        row["parity_top1_agreement"] = self.export_report.top1_agreement
        self.rows.append(row)
        self._rolled_back(row)  # The int8 file stays on disk; its row says it lost too much.


def _check_stages(stages):
    if isinstance(stages, str) or not all(stage in STAGES for stage in stages):
        raise ValueError(
            f"`stages` must be a list drawn from {list(STAGES)}. Received: stages={stages!r}"
        )
    return tuple(stage for stage in STAGES if stage in stages)


def _accuracy(row):
    """The accuracy of a row's file when it has one, else of its Keras model."""
    return row["accuracy"] if row.get("file_accuracy") is None else row["file_accuracy"]


def _outputs(model, x):
    return model_outputs(model, x, batch_size=512, dtype="float32")


class _Measure:
    """Accuracy, sizes, latency and teacher agreement of one stage."""

    def __init__(self, x, y, teacher_outputs, output_dir):
        self.x, self.y, self.teacher_outputs, self.output_dir = x, y, teacher_outputs, output_dir

    def _scores(self, outputs):
        top1 = outputs.argmax(-1)
        agreement = None
        if self.teacher_outputs is not None:
            agreement = float(np.mean(top1 == self.teacher_outputs.argmax(-1)))
        return float(np.mean(top1 == self.y)), agreement

    def keras_row(self, stage, model, export=True):
        accuracy, agreement = self._scores(_outputs(model, self.x))
        row = {
            "stage": stage,
            "accuracy": accuracy,
            "parameters": parameter_count(model),
            "sparsity": weight_sparsity(model)["total"],
            "teacher_agreement": agreement,
            "tflite_bytes": None,
            "gzip_bytes": None,
            "latency_ms": None,
            "tflite_path": None,
        }
        if export:
            path = os.path.join(self.output_dir, f"{stage}.tflite")
            export_tflite(model, path, sample_inputs=self.x[:64])
            row.update(self._file_columns(path))
        return row

    def file_row(self, stage, path, model):
        accuracy, agreement = self._scores(run_tflite(path, self.x))
        row = {
            "stage": stage,
            "accuracy": accuracy,
            "parameters": parameter_count(model),
            "sparsity": weight_sparsity(model)["total"],
            "teacher_agreement": agreement,
        }
        row.update(self._file_columns(path))
        return row

    def _file_columns(self, path):
        check = check_file(path, self.x, self.y, self.teacher_outputs)
        latency = check.pop("latency_ms_threads")
        return {
            "tflite_bytes": os.path.getsize(path),
            "gzip_bytes": gzip_size(path),
            "latency_ms": latency["1"],
            "latency_ms_2_threads": latency["2"],
            "tflite_path": path,
            **check,
        }
